"""Serving: ``urllm recommend`` and ``urllm serve`` on a pipeline run's artifacts (docs/serve.md)."""
