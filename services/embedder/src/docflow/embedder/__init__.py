"""docflow embedder service: turns a document's chunks into one float32 matrix in storage.

Entry points: `docflow.embedder.worker` (the Celery app), `docflow.embedder.tasks`
(the embed and query tasks) and `docflow.embedder.providers.create_provider`.
"""
