"""Queue and task names: the one place these strings are spelled.

The gateway builds chains from these names, each worker is started with its own
queue from here, and KEDA's `listName` and the dashboards use the same values.
kombu keeps a queue's pending messages in a Redis list named exactly like the queue,
so `LLEN <queue>` is the backlog KEDA scales on.
"""

from enum import StrEnum


class Stage(StrEnum):
    EXTRACT = "extract"
    EMBED = "embed"
    INDEX = "index"


class Queue(StrEnum):
    EXTRACT = "docflow.extract"
    EMBED = "docflow.embed"
    INDEX = "docflow.index"


SERVICE_OF_STAGE: dict[Stage, str] = {
    Stage.EXTRACT: "extractor",
    Stage.EMBED: "embedder",
    Stage.INDEX: "indexer",
}

QUEUE_OF_STAGE: dict[Stage, Queue] = {
    Stage.EXTRACT: Queue.EXTRACT,
    Stage.EMBED: Queue.EMBED,
    Stage.INDEX: Queue.INDEX,
}


class Task(StrEnum):
    """Stable Celery task names (never derived from module paths)."""

    EXTRACT = "docflow.extract.document"
    # A big PDF's extract fans out: page ranges in parallel, then one merge.
    EXTRACT_RANGE = "docflow.extract.range"
    EXTRACT_MERGE = "docflow.extract.merge"
    EMBED = "docflow.embed.document"
    INDEX = "docflow.index.document"
    # Query-time work, served by the same workers that own the libraries.
    EMBED_QUERY = "docflow.embed.query"
    SEARCH = "docflow.index.search"
    DELETE_VECTORS = "docflow.index.delete_document"


STAGE_OF_TASK: dict[Task, Stage] = {
    Task.EXTRACT: Stage.EXTRACT,
    Task.EXTRACT_RANGE: Stage.EXTRACT,
    Task.EXTRACT_MERGE: Stage.EXTRACT,
    Task.EMBED: Stage.EMBED,
    Task.INDEX: Stage.INDEX,
    Task.EMBED_QUERY: Stage.EMBED,
    Task.SEARCH: Stage.INDEX,
    Task.DELETE_VECTORS: Stage.INDEX,
}

# Every task runs on the queue of the stage whose libraries it needs.
TASK_ROUTES: dict[str, dict[str, str]] = {
    task.value: {"queue": QUEUE_OF_STAGE[stage].value} for task, stage in STAGE_OF_TASK.items()
}
