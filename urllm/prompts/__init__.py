"""Retrieval-augmented, domain-specific prompts (method §3) and the prompt datasets."""
