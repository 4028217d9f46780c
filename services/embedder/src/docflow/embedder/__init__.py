"""docflow embedder service."""
