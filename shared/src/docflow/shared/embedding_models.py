"""Which model embedded a vector, and when two vectors may share a tenant's table.

A vector is only comparable with vectors of the same model: cosine similarity between
an all-MiniLM-L6-v2 vector and a text-embedding-3-small one (or two hashing vectors of
different widths) means nothing, even when the dimensions happen to agree. So every
document records the model its vectors come from, each tenant's table records the
model it holds, and an index write or a search that would mix two is refused.

The model's identity is `provider:model:dimensions`, e.g.
`minilm:all-MiniLM-L6-v2:384`. The runtime (torch, onnx, onnx-int8 for MiniLM) is
recorded beside it but is not part of the identity: the three runtimes compute the same
function of the same weights, within the quality gate of tests/quality (cosine >= 0.98
to torch for every chunk, nDCG@10 within 0.005), so vectors of one runtime search
those of another as well as their own, and switching DOCFLOW_MINILM_RUNTIME (or moving
the embedder to a GPU with the torch runtime) needs no re-embedding. A different
provider, model or dimension does.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict

from docflow.shared.errors import ErrorCode, PermanentError


def model_identity(provider: str, model: str, dimensions: int) -> str:
    """The identifier vectors of one model share, e.g. `minilm:all-MiniLM-L6-v2:384`."""
    return f"{provider}:{model}:{int(dimensions)}"


class EmbeddingModel(BaseModel):
    """A model as an embedder runs it: what it is (identity) and how it runs (runtime)."""

    model_config = ConfigDict(frozen=True)

    provider: str
    model: str
    dimensions: int
    runtime: str

    @property
    def identity(self) -> str:
        return model_identity(self.provider, self.model, self.dimensions)


def mismatch_message(table_model: str, other_model: str, tenant: str, what: str) -> str:
    """The refusal: both models, and what to do about it."""
    return (f"{what} was embedded with model {other_model!r} but tenant {tenant!r}'s index holds vectors of "
            f"model {table_model!r}; vectors of different models cannot be mixed in one index. Re-embed the "
            f"tenant's documents with the new model (POST /v1/admin/reembed), or set the embedder "
            f"back to {table_model!r}")


class EmbeddingModelMismatch(PermanentError):
    """An index write or a search that would mix two models in a tenant's index.

    At index time it fails the document (permanent: a retry embeds with the same model);
    raised by the search task, Celery carries its type back to the gateway, which
    answers 409.
    """

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.EMBEDDING_MODEL_MISMATCH, message)

    def __reduce__(self):
        return (type(self), (self.message,))


def check_same_model(table_model: str | None, other_model: str | None, tenant: str, what: str) -> None:
    """Refuse `other_model` in an index holding `table_model`. Either unknown (an index
    made, or a vector embedded, before models were recorded) is let through."""
    if table_model and other_model and table_model != other_model:
        raise EmbeddingModelMismatch(mismatch_message(table_model, other_model, tenant, what))


class QueryVector(BaseModel):
    """What the embedder's query task returns: the vector and the model that made it."""

    vector: list[float]
    model_id: str | None = None
    runtime: str | None = None

    @classmethod
    def of(cls, value: Any) -> "QueryVector | None":
        """The search task's first argument: this form, a bare vector (an embedder from
        before models were recorded: not checked), or None (keyword search)."""
        if value is None:
            return None
        if isinstance(value, dict):
            return cls.model_validate(value)
        return cls(vector=list(value))


# The remote-control command an embedder worker answers with its provider, model and
# runtime (registered in docflow.embedder.worker, asked by GET /v1/admin/workers).
EMBEDDER_INSPECT_COMMAND = "docflow_embedder"
