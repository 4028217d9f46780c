"""Which lane a document's version runs in: the stages' document queues, or their bulk
lanes (docs/architecture.md, "Fair sharing").

A tenant with DOCFLOW_FAIR_SHARE_INTERACTIVE_LIMIT documents or more already in flight
is importing in bulk: its next version goes to the bulk lanes. Workers take the two
lanes turn about, so another tenant's upload waits behind at most that many of the
importer's documents (plus one bulk task per worker process), never behind the whole
import. A batch needs no rule of its own: its files are started one after another, so
past the limit the rest of a big batch goes bulk.

The count is the tenant's per-status sets (the status scripts keep them), read in the
transaction that creates the record, so two uploads at once see each other. A version
keeps its lane to the end: the gateway chooses it once, the chain carries it to every
stage, a dead letter remembers the queue it failed on and its replay resumes there.
"""


def runs_in_bulk_lane(in_flight: int, interactive_limit: int) -> bool:
    """Whether a tenant's next version goes to the bulk lanes, with `in_flight` of its
    documents in flight before it (0 = fair sharing off)."""
    return interactive_limit > 0 and in_flight >= interactive_limit
