"""The message that travels down the chain: identifiers and storage keys only.

This is the claim check: a 500-page document and a 1-page one send messages of the
same size, because text and vectors stay in storage and only their keys travel.
"""

from pydantic import BaseModel, ConfigDict


def artifact_prefix(tenant: str, document_id: str) -> str:
    return f"tenants/{tenant}/documents/{document_id}/"


def version_prefix(tenant: str, document_id: str, version: int) -> str:
    """Where one version's artifacts are (a re-embed reads a completed version's chunks)."""
    return f"{artifact_prefix(tenant, document_id)}v{int(version)}/"


class PipelineMessage(BaseModel):
    """What each stage receives and, with its own output key filled in, returns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    document_id: str
    tenant: str
    # Bumped by every reprocess; a stage whose version is not the document's current
    # one is stale and stops, so an old run never overwrites a new one.
    version: int
    content_type: str
    original_key: str
    chunks_key: str | None = None
    embeddings_key: str | None = None
    # Set by the embedder with `embeddings_key`: the model the vectors come from
    # (docflow.shared.embedding_models: provider:model:dimensions) and how it ran
    # (torch, onnx, onnx-int8, ...). The indexer refuses a model other than its index's.
    embedding_model: str | None = None
    embedding_runtime: str | None = None

    @property
    def version_prefix(self) -> str:
        return version_prefix(self.tenant, self.document_id, self.version)

    def key(self, artifact: str) -> str:
        """Storage key of one of this run's artifacts, e.g. `chunks.json`."""
        return self.version_prefix + artifact


class Chunk(BaseModel):
    """One searchable piece of a document, as stored by the extractor."""

    index: int
    text: str
    page: int | None = None


def vector_id(document_id: str, version: int, chunk_index: int) -> str:
    """Deterministic vector id: a re-run task overwrites, never duplicates."""
    return f"{document_id}#v{version}#{chunk_index}"
