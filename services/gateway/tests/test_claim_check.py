"""Messages carry ids and keys only: a 200-page PDF enqueues what a 1-page one does."""

from docflow.shared.names import Queue

CLAIM_CHECK_LIMIT_BYTES = 4096


def test_messages_for_a_200_page_pdf_are_small_and_size_independent(gateway, broker, pdf_of_pages):
    big_pdf, small_pdf = pdf_of_pages(200), pdf_of_pages(1)
    assert len(big_pdf) > 50 * len(small_pdf)  # the big one really is big

    big = gateway.accepted(data=big_pdf, filename="handbook.pdf")
    small = gateway.accepted(data=small_pdf, filename="memo.pdf")
    gateway.post(f"/v1/documents/{big['document_id']}/reprocess")
    gateway.delete(f"/v1/documents/{small['document_id']}")

    big_message, small_message, reprocess_message = broker.messages(Queue.EXTRACT.value)
    [delete_message] = broker.messages(Queue.INDEX.value)
    for message in (big_message, small_message, reprocess_message, delete_message):
        assert message.size < CLAIM_CHECK_LIMIT_BYTES, message.raw
        assert "quick brown fox" not in message.raw and "quick brown fox" not in str(message.body)
    # Same fields, ids of the same length: only a digit or two may differ.
    assert abs(big_message.size - small_message.size) <= 8
