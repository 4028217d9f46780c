"""The CLI's copy of the statuses is the API's, in the same order."""

from docflow.cli import statuses
from docflow.shared.pipeline_shape import FINAL_STATUSES, STATUS_ORDER, DocumentStatus


def test_the_clis_statuses_are_the_apis():
    assert statuses.STATUSES == tuple(status.value for status in STATUS_ORDER)
    assert statuses.FINAL_STATUSES == {status.value for status in FINAL_STATUSES}
    assert (statuses.QUEUED, statuses.COMPLETED, statuses.FAILED, statuses.CANCELLED) == (
        DocumentStatus.QUEUED, DocumentStatus.COMPLETED, DocumentStatus.FAILED, DocumentStatus.CANCELLED)
