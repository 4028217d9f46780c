"""docflow extractor service: a stored original to page text and token-bounded chunks.

Entry points: `docflow.extractor.worker` (the Celery app), `docflow.extractor.tasks`
(the extract task), `docflow.extractor.readers.read_document` (bytes to pages) and
`docflow.extractor.chunking.chunk_pages` (pages to chunks).
"""
