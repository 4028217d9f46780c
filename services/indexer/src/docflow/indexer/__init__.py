"""docflow indexer service."""
