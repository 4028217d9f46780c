"""Which lane a document's version runs in: the stages' document queues, or their bulk
lanes (docs/architecture.md, "Fair sharing").

Bulk work is recognised two ways, with one setting, DOCFLOW_FAIR_SHARE_INTERACTIVE_LIMIT:

- A tenant with that many documents or more already in flight is importing: its next
  version goes to the bulk lanes (uploads, documents by URL, reprocesses, recoveries).
- A batch of more files than that is an import from its first file: all of it goes
  bulk. (By the count alone its first files would take the document queues, and an
  upload of another tenant would wait for them: measured in bench/fair_share.py.)

Workers take the two lanes turn about, so another tenant's upload waits behind at most
the importer's documents in the document queues (fewer than the limit) and one bulk
task per worker process, never behind the whole import.

The count is the tenant's per-status sets (the status scripts keep them), read in the
transaction that creates the record, so two uploads at once see each other. A version
keeps its lane to the end: the gateway chooses it once, the chain carries it to every
stage, a dead letter remembers the queue it failed on and its replay resumes there.
"""


def runs_in_bulk_lane(in_flight: int, interactive_limit: int) -> bool:
    """Whether a tenant's next version goes to the bulk lanes, with `in_flight` of its
    documents in flight before it (0 = fair sharing off)."""
    return interactive_limit > 0 and in_flight >= interactive_limit


def is_bulk_batch(files: int, interactive_limit: int) -> bool:
    """Whether a batch of `files` files goes to the bulk lanes whole (0 = fair sharing off)."""
    return interactive_limit > 0 and files > interactive_limit
