"""What a reader must let through when it turns library exceptions into error codes.

Parsers of untrusted formats raise a zoo of exception types on malformed input (pypdf
says so in its docs: broken files "might cause other Exceptions"; Pillow's decoders
raise OSError, SyntaxError, ValueError, ...). Readers therefore map *any* exception
from a library call to a `PermanentError` with a specific code -- except these, which
are not the input's fault and must keep their meaning.
"""

from celery.exceptions import SoftTimeLimitExceeded

from docflow.shared.errors import PipelineError

NOT_THE_INPUTS_FAULT: tuple[type[BaseException], ...] = (
    PipelineError,  # already classified (e.g. OCR unavailable, too many pages)
    SoftTimeLimitExceeded,  # the stage task records it as a timeout and retries
    MemoryError,  # the worker is short of memory; recorded as an internal error
)
