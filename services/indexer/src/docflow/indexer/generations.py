"""Which generation of a tenant's index a write, a delete or a search goes to, and how a
document is sent to be re-embedded (docs/architecture.md, "Re-embedding").

Used by the ordinary index tasks (tasks.py) and by the re-embedding ones (reembedding.py).
"""

from celery import chain

from docflow.indexer.worker import app, get_store
from docflow.shared import artifacts
from docflow.shared.messages import version_prefix
from docflow.shared.names import Task
from docflow.shared.reembed import ReembedMessage, Reembeds
from docflow.shared.stage_task import DocflowTask


def reembeds(task: DocflowTask) -> Reembeds:
    return Reembeds(task.redis, task.settings.redis_key_prefix)


def generation_for_write(task: DocflowTask, tenant: str, embedding_model: str | None) -> int:
    """Where the ordinary pipeline indexes a document: the active generation, unless a
    re-embed is running and the document's model is not the active table's (the
    embedder already runs the new model): then the generation being built, which is
    the only one that can take it."""
    live = reembeds(task).live_generations(tenant)
    if len(live) == 1:
        return live[0]
    active, building = live
    held = getattr(get_store(), "embedding_model", lambda *_: None)(tenant, active)
    return building if embedding_model and held and held != embedding_model else active


def send_reembed(tenant: str, document_id: str, version: int, generation: int) -> None:
    """Re-embed one completed version with the embedder's model into `generation`: the
    embedder's task, then the indexer's (each on its stage's document queue)."""
    message = ReembedMessage(tenant=tenant, document_id=document_id, version=version, generation=generation,
                             chunks_key=version_prefix(tenant, document_id, version) + artifacts.CHUNKS)
    chain(app.signature(Task.REEMBED_EMBED.value, args=[message.model_dump()]),
          app.signature(Task.REEMBED_INDEX.value)).apply_async(ignore_result=True)
