"""Claim check: a 200-page document's messages are as small as a 1-page one's.

Each stage's worker is held back in turn so the message sent to it can be read
straight from its Redis queue, exactly as the broker stores it.
"""

import base64
import json
import time

import redis

from docflow.devstack import samples
from docflow.shared.names import BULK_QUEUE_OF_STAGE, QUEUE_OF_STAGE, Stage

LIMIT = 4096


def wait_for_message(client: redis.Redis, stage: Stage, document_id: str, timeout: float = 300) -> bytes:
    """The one message about `document_id` on the stage's queue (or its bulk lane, if the
    tenant was past its fair-share limit), as the broker stores it (other tests'
    documents may be queued beside it)."""
    queue = QUEUE_OF_STAGE[stage].value
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ours = [m for lane in (queue, BULK_QUEUE_OF_STAGE[stage].value) for m in client.lrange(lane, 0, -1)
                if document_id.encode() in base64.b64decode(json.loads(m)["body"])]
        if ours:
            assert len(ours) == 1, f"expected one message for the document on {queue}"
            return ours[0]
        time.sleep(0.1)
    raise AssertionError(f"no message reached {queue}")


def test_messages_for_a_200_page_document_stay_under_4_kb(stack, api_a):
    client = redis.Redis.from_url(stack.redis_url)
    # Short pages: the point is the page count, and embedding stays quick on 2 cores.
    pages = [f"Page {n}. Claim checks keep text out of the broker." for n in range(200)]
    held_back = [Stage.EXTRACT, Stage.EMBED, Stage.INDEX]
    for stage in held_back:
        stack.workers[stage].stop()
    sizes = {}
    try:
        document_id = api_a.upload("big.pdf", samples.pdf(pages))
        for stage in held_back:
            message = wait_for_message(client, stage, document_id)
            sizes[stage] = len(message)
            assert b"Claim checks keep text" not in message
            stack.start_worker(stage)
            stack.wait_for_worker(stage)
    finally:
        for stage in held_back:
            if not stack.workers[stage].alive():
                stack.start_worker(stage)
                stack.wait_for_worker(stage)
    record = api_a.wait_final(document_id, timeout=300)
    assert record["status"] == "completed", record["error"]
    assert record["pages"] == 200
    assert all(size < LIMIT for size in sizes.values()), sizes
