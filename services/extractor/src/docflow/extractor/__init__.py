"""docflow extractor service."""
