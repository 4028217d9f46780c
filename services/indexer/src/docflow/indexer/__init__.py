"""docflow indexer service: writes a document's vectors to LanceDB or Pinecone and serves search."""
