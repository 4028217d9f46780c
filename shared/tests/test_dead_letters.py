"""Dead letters on a real redis-server: bounded by age and count, and gone with their document."""

from datetime import timedelta

from docflow.shared.deadletters import DeadLetterStore
from docflow.shared.status import utcnow


def add(store: DeadLetterStore, document_id: str, n: int = 0):
    return store.add(task_name="docflow.embed.document", task_id=f"t{n}.embed", queue="docflow.embed", args=[],
                     stage="embed", error_code="internal_error", error_message="boom", attempts=4,
                     document_id=document_id, tenant="acme")


def test_trim_keeps_the_newest_count(redis_client):
    store = DeadLetterStore(redis_client)
    letters = [add(store, f"doc{n}", n) for n in range(7)]
    assert store.trim(max_age_seconds=0, max_count=3) == 4
    assert [letter.id for letter in store.list()] == [letter.id for letter in reversed(letters[-3:])]
    assert redis_client.hlen(store.entries_key) == 3  # the entries went with the list's ids
    assert store.trim(max_age_seconds=0, max_count=0) == 0  # 0: no bound


def test_trim_forgets_letters_older_than_the_age_only(redis_client):
    store = DeadLetterStore(redis_client)
    old, recent = add(store, "old"), add(store, "recent")
    later = utcnow() + timedelta(seconds=100)  # `old` and `recent` are both ~100 s old then...
    assert store.trim(max_age_seconds=1000, max_count=0, now=later) == 0
    # ...and only letters past the age go: none of them here, both a day later.
    assert store.trim(max_age_seconds=1000, max_count=0, now=later + timedelta(days=1)) == 2
    assert store.list() == [] and store.get(old.id) is None and store.get(recent.id) is None


def test_a_deleted_documents_letters_go_with_it(redis_client):
    store = DeadLetterStore(redis_client)
    mine, other = add(store, "deleted", 1), add(store, "kept", 2)
    add(store, "deleted", 3)
    assert store.remove_for_documents({"deleted"}) == 2
    assert [letter.id for letter in store.list()] == [other.id]
    assert store.get(mine.id) is None
    assert store.remove_for_documents(set()) == 0
