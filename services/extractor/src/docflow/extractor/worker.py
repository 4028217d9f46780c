"""The extractor's Celery worker: `celery -A docflow.extractor.worker worker -Q docflow.extract`.

Import stays light (no pypdf, Pillow or Tesseract work here): Celery imports this in
the parent process, which then forks the pool.
"""

import os

# Tesseract starts an OpenMP thread per core for every page; with one worker process
# per core those threads only fight each other (several times slower on small CPUs).
# Set before any Tesseract subprocess is started: they inherit the environment.
os.environ.setdefault("OMP_THREAD_LIMIT", "1")

from docflow.extractor.ocr import check_tesseract  # noqa: E402
from docflow.shared.names import Stage  # noqa: E402
from docflow.shared.settings import get_settings  # noqa: E402
from docflow.shared.worker import create_worker_app  # noqa: E402


def _on_process_start() -> None:
    check_tesseract(get_settings().ocr_languages)


app = create_worker_app(Stage.EXTRACT, include=["docflow.extractor.tasks"],
                        on_process_start=_on_process_start)
