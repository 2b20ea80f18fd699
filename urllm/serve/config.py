"""Configuration of ``urllm recommend`` and ``urllm serve`` (the ``serve:`` section)."""

from __future__ import annotations

from dataclasses import dataclass

from urllm.configuration import opt


@dataclass
class ServeConfig:
    """Which systems are loaded, request limits, and how concurrent requests are batched."""

    host: str = opt("127.0.0.1", "address `urllm serve` listens on (loopback by default)")
    port: int = opt(8000, "TCP port of `urllm serve`")
    systems: list[str] = opt(
        factory=lambda: ["graph", "urllm"],
        help="systems loaded at start-up (names of urllm.recommender.SYSTEMS); requests pick one",
    )
    default_system: str = opt("", "system of a request that names none; empty = the first of systems")
    max_k: int = opt(100, "largest k a request may ask for")
    max_history: int = opt(200, "most items a typed history may hold (a longer one is a 400)")
    batch_window_ms: float = opt(10.0, "how long the first request of a batch waits for others (ms)")
    max_batch_size: int = opt(16, "most requests scored in one forward pass")
    n_candidates: int = opt(20, "candidates shown as evidence for systems without explain()")
    n_neighbours: int = opt(3, "similar training users shown as evidence for systems without explain()")
    items_per_neighbour: int = opt(10, "a neighbour's most recent target-domain items shown")
    exclude_history: bool = opt(
        True, "leave items already in the history out of the top-k (evaluation keeps them)"
    )
    search_limit: int = opt(20, "titles returned by GET /items?q=")
    device: str = opt("cpu", "torch device of the LLM (cpu | cuda | cuda:N)")

    def __post_init__(self) -> None:
        from urllm.recommender import check_system

        if not self.systems:
            raise ValueError("systems: list at least one system")
        for i, name in enumerate(self.systems):
            check_system(name, f"serve.systems[{i}]")
        if self.default_system and self.default_system not in self.systems:
            raise ValueError(f"default_system {self.default_system!r} is not in systems {self.systems}")
        for name in ("max_k", "max_history", "max_batch_size", "search_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_candidates", "n_neighbours", "items_per_neighbour"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_window_ms < 0:
            raise ValueError(f"batch_window_ms must be >= 0, got {self.batch_window_ms}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")

    @property
    def system(self) -> str:
        """The default system."""
        return self.default_system or self.systems[0]
