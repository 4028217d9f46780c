"""The Redis side of re-embedding on a real redis-server: one job per tenant, and the
switch that waits for every document, including those the ordinary pipeline completed
into the old generation while the job ran (docs/architecture.md, "Re-embedding")."""

from docflow.shared.reembed import Reembeds, ReembedState

TENANT = "acme"
DOCUMENTS = "docflow:tenant:acme:documents"


def jobs_of(redis_client) -> Reembeds:
    return Reembeds(redis_client, "docflow:")


def walked_with(jobs: Reembeds, *document_ids: str) -> None:
    """The coordinator's walk sent these and reached the end."""
    jobs.note_sent(TENANT, list(document_ids))
    jobs.update(TENANT, walked=1)


def test_a_tenant_starts_at_generation_zero_and_one_job_runs_at_a_time(redis_client):
    jobs = jobs_of(redis_client)
    assert (jobs.active(TENANT).generation, jobs.active(TENANT).model) == (0, None)
    assert jobs.job(TENANT) is None
    assert jobs.start(TENANT, DOCUMENTS) == 1
    assert jobs.start(TENANT, DOCUMENTS) is None, "refused while one runs"
    assert jobs.live_generations(TENANT) == [0, 1]
    assert jobs.job(TENANT).state is ReembedState.RUNNING


def test_the_switch_waits_for_every_sent_document_then_moves_the_pointer(redis_client):
    jobs = jobs_of(redis_client)
    redis_client.zadd(DOCUMENTS, {"d1": 1.0, "d2": 2.0})
    jobs.start(TENANT, DOCUMENTS)
    jobs.record_active_model(TENANT, "hash:feature-hashing:256")
    assert jobs.job(TENANT).total == 2, "before the walk: every document of the tenant"
    walked_with(jobs, "d1", "d2")
    jobs.note_done(TENANT, "d1", "hash:feature-hashing:128")
    assert not jobs.switch(TENANT), "d2 is still in flight"
    assert jobs.active(TENANT).model == "hash:feature-hashing:256", "searches keep the old model meanwhile"
    jobs.note_done(TENANT, "d2", "hash:feature-hashing:128")
    jobs.note_done(TENANT, "d2")  # a redelivered task counts nothing twice
    progress = jobs.job(TENANT)
    assert (progress.total, progress.done, progress.failed) == (2, 2, 0)
    assert jobs.switch(TENANT)
    assert (jobs.active(TENANT).generation, jobs.active(TENANT).model) == (1, "hash:feature-hashing:128")
    assert jobs.job(TENANT).state is ReembedState.COMPLETED
    assert jobs.live_generations(TENANT) == [1]


def test_a_document_completed_into_the_old_generation_meanwhile_is_redone_before_the_switch(redis_client):
    jobs = jobs_of(redis_client)
    jobs.start(TENANT, DOCUMENTS)
    walked_with(jobs, "d1")
    jobs.note_done(TENANT, "d1")
    assert jobs.after_write(TENANT, "new", 0) == "redo"
    assert jobs.after_write(TENANT, "direct", 1) == "", "written into the new generation: nothing to redo"
    assert not jobs.switch(TENANT), "the redo comes first"
    assert jobs.redo_batch(TENANT, 10) == ["new"]
    jobs.note_sent(TENANT, ["new"])
    jobs.forget_redo(TENANT, ["new"])
    assert not jobs.switch(TENANT)
    jobs.note_done(TENANT, "new")
    assert jobs.switch(TENANT)


def test_a_write_into_a_generation_retired_meanwhile_is_late(redis_client):
    jobs = jobs_of(redis_client)
    jobs.start(TENANT, DOCUMENTS)
    walked_with(jobs)
    assert jobs.switch(TENANT)
    assert jobs.after_write(TENANT, "slow", 0) == "late", "its writer must send it to generation 1"
    assert jobs.after_write(TENANT, "slow", 1) == ""


def test_a_failed_document_fails_no_switch_and_the_next_job_builds_a_fresh_generation(redis_client):
    jobs = jobs_of(redis_client)
    jobs.start(TENANT, DOCUMENTS)
    walked_with(jobs, "d1", "d2")
    jobs.note_done(TENANT, "d1")
    jobs.note_failed(TENANT, "d2", "PermanentError: chunks artifact is malformed")
    assert not jobs.switch(TENANT)
    jobs.fail(TENANT, "1 document(s) could not be re-embedded")
    assert jobs.job(TENANT).state is ReembedState.FAILED and jobs.active(TENANT).generation == 0
    assert jobs.start(TENANT, DOCUMENTS) == 2, "never the failed job's table, which a late task may still write"
    assert jobs.fields(TENANT)["leftover"] == "1"
    progress = jobs.job(TENANT)
    assert (progress.done, progress.failed, progress.error) == (0, 0, None)
