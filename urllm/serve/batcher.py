"""Micro-batching: concurrent requests collected for a short window and answered by one call.

The first request of a batch waits at most ``window_s`` for others (or until ``max_size`` are queued);
the batch then runs in one worker thread (``fn(items) -> results``, one model forward pass per system
and domain), so the event loop keeps accepting requests meanwhile. A failing batch fails each of its
requests with the same exception; the batcher itself keeps running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

logger = logging.getLogger(__name__)


class MicroBatcher:
    """``await batcher.submit(item)`` -> that item's result from ``fn(batch)``."""

    def __init__(self, fn: Callable[[Sequence[Any]], list[Any]], window_s: float, max_size: int) -> None:
        self.fn = fn
        self.window_s = window_s
        self.max_size = max_size
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="urllm-batch")
        self.batches = 0
        self.requests = 0
        self.largest = 0
        self.busy_s = 0.0

    def start(self) -> None:
        """Start the collecting task on the running event loop."""
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)

    async def submit(self, item: Any) -> Any:
        if self.queue is None:
            raise RuntimeError("MicroBatcher.submit() before start()")
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((item, fut))
        return await fut

    async def _collect(self) -> list[tuple[Any, asyncio.Future]]:
        assert self.queue is not None
        batch = [await self.queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window_s
        while len(batch) < self.max_size:
            try:
                batch.append(self.queue.get_nowait())  # already waiting: no need to sleep
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), left))
            except asyncio.TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            batch = [(item, fut) for item, fut in batch if not fut.done()]  # cancelled by a gone client
            if not batch:
                continue
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(self.executor, self.fn, [item for item, _ in batch])
                outcome: list[Any] = list(results)
            except Exception as exc:  # answer every request of the batch; keep serving
                logger.exception("batch of %d failed", len(batch))
                outcome = [exc] * len(batch)
            self.busy_s += time.perf_counter() - start
            self.batches += 1
            self.requests += len(batch)
            self.largest = max(self.largest, len(batch))
            for (_, fut), res in zip(batch, outcome, strict=True):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)

    def stats(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "requests": self.requests,
            "mean_batch_size": round(self.requests / self.batches, 2) if self.batches else 0.0,
            "largest_batch": self.largest,
            "busy_seconds": round(self.busy_s, 2),
            "window_ms": round(self.window_s * 1000, 2),
            "max_batch_size": self.max_size,
        }
