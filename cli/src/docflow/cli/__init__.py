"""docflow command line."""
