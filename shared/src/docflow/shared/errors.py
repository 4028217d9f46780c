"""Error codes and the two kinds of failure every stage distinguishes.

A `PermanentError` (corrupt, encrypted, empty, unsupported input) fails the document
at once: retrying cannot help. A `TransientError` (a dependency unreachable, a
timeout) is retried with exponential backoff and jitter, then the document fails with
the reason and the task is dead-lettered.
"""

from enum import StrEnum


class ErrorCode(StrEnum):
    CORRUPT_FILE = "corrupt_file"
    ENCRYPTED_FILE = "encrypted_file"
    EMPTY_DOCUMENT = "empty_document"
    UNSUPPORTED_TYPE = "unsupported_type"
    TOO_LARGE = "too_large"
    UNDECODABLE_TEXT = "undecodable_text"
    TIMEOUT = "timeout"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    ARTIFACT_MISSING = "artifact_missing"
    EMBEDDER_UNAVAILABLE = "embedder_unavailable"
    VECTOR_STORE_UNAVAILABLE = "vector_store_unavailable"
    OCR_UNAVAILABLE = "ocr_unavailable"
    INTERNAL_ERROR = "internal_error"
    # Delivered more than DOCFLOW_MAX_DELIVERIES times: its runs keep dying (a poison
    # message that crashes or hangs its worker), so it is dead-lettered, not retried.
    REDELIVERY_LIMIT = "redelivery_limit"
    # A queued message no worker could decode (wrong serializer, malformed body,
    # unknown task): recorded as a dead letter, never run.
    UNDECODABLE_MESSAGE = "undecodable_message"
    # A document submitted as a URL (docflow.extractor.fetch): its address (or a
    # redirect's) is not allowed (docflow.shared.url_safety); the host could not be
    # reached or resolved; the server answered an HTTP error (4xx permanent, 5xx, 408
    # and 429 retried), or redirected too often; the body is over max_upload_bytes; the
    # server was too slow.
    URL_REFUSED = "url_refused"
    URL_UNREACHABLE = "url_unreachable"
    URL_HTTP_ERROR = "url_http_error"
    URL_TOO_LARGE = "url_too_large"
    URL_TIMEOUT = "url_timeout"
    # The document was embedded with another model than the one its tenant's index holds
    # (docflow.shared.embedding_models): vectors of two models are never mixed in one
    # index; the tenant must be re-embedded (or the embedder set back) first.
    EMBEDDING_MODEL_MISMATCH = "embedding_model_mismatch"


class PipelineError(Exception):
    """An error a stage understands, with a code users can act on."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message

    def __reduce__(self):
        # Celery pickles a task's exception to hand it to on_failure; without this the
        # (code, message) signature cannot be rebuilt and Celery substitutes a wrapper.
        return (type(self), (self.code, self.message))


class PermanentError(PipelineError):
    """The input itself is at fault: fail now, never retry."""


class TransientError(PipelineError):
    """Something outside the input failed: retry with backoff, then fail."""
