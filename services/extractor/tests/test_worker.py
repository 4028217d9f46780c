"""The worker app: the task under its stable name, on the extract queue, Tesseract single-threaded."""

import os

import pytest
import structlog

from docflow.extractor.ocr import check_tesseract
from docflow.extractor.worker import app
from docflow.shared.names import Queue, Task


def test_the_extract_task_is_registered_under_its_stable_name_and_queue():
    app.loader.import_default_modules()
    assert Task.EXTRACT.value in app.tasks
    assert app.amqp.router.route({}, Task.EXTRACT.value)["queue"].name == Queue.EXTRACT.value


def test_results_are_stored_in_one_round_trip():
    from docflow.shared.celery_app import WorkerResultBackend

    assert type(app.backend) is WorkerResultBackend


def test_tesseract_runs_single_threaded():
    assert os.environ["OMP_THREAD_LIMIT"] == "1"


@pytest.mark.parametrize(("languages", "expected_level"), [("eng+deu", "info"), ("eng+tlh", "error")])
def test_check_tesseract_reports_missing_language_data(languages, expected_level):
    with structlog.testing.capture_logs() as logs:
        check_tesseract(languages)
    assert [entry["log_level"] for entry in logs] == [expected_level]
