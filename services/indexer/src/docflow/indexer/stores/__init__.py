"""Vector store backends, one module each, chosen by `DOCFLOW_VECTOR_STORE`.

Only `base` is imported here: a backend's library (lancedb, pinecone) is imported when
`open_vector_store` picks it, in the worker's pool process (see lancedb.py).
"""

from docflow.indexer.stores.base import (
    NO_ATTRIBUTES,
    DocumentAttributes,
    SearchHit,
    VectorRecord,
    VectorStore,
    document_id_prefix,
    version_id_prefix,
    version_of_id,
)
from docflow.shared.settings import Settings

__all__ = ["NO_ATTRIBUTES", "DocumentAttributes", "SearchHit", "VectorRecord", "VectorStore", "document_id_prefix", "open_vector_store",
           "version_id_prefix", "version_of_id"]


def open_vector_store(settings: Settings) -> VectorStore:
    """The configured backend, its library imported only now.

    Importing lancedb starts a thread, so it must first happen in a pool child, not in
    the prefork parent (see lancedb.py); and a deployment loads only the
    library it uses.
    """
    if settings.vector_store == "pinecone":
        from docflow.indexer.stores.pinecone import PineconeStore

        return PineconeStore.from_settings(settings)
    from docflow.indexer.stores.lancedb import LanceDBStore, VectorSearchOptions

    return LanceDBStore(settings.lancedb_uri, VectorSearchOptions(
        nprobes=settings.vector_index_nprobes, refine_factor=settings.vector_index_refine_factor or None))
