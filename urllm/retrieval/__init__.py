"""User retrieval (method §2): index training users' domain-view embeddings, fetch similar users."""
