"""docflow local stack."""
