"""docflow gateway service."""
