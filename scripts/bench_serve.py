"""Bounded loopback load test of ``urllm serve``: requests/s and latency percentiles per system and
number of concurrent clients.

Starts ``urllm serve`` as a child process on 127.0.0.1 (a free port), waits for ``/health``, then for each
system and each concurrency level sends ``--requests`` POST /recommend requests (known users in a fixed
order, both target domains in turn, k=10, evidence on as the page asks) from that many concurrent
clients, and prints one JSON object (also written to ``--out``). Only loopback is ever contacted; every
loop is bounded by the request count and a per-request timeout; the server is stopped at the end.

    python scripts/bench_serve.py --config configs/movielens.yaml run_dir=runs/serve-demo \\
        --systems graph,urllm --requests 200 --concurrency 1,4,16 --out runs/serve/bench.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

logger = logging.getLogger("bench_serve")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> dict:
    model = ""
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "python": platform.python_version(),
    }


def start_server(args, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "urllm", "serve", "--config", args.config, "--host", "127.0.0.1"]
    cmd += ["--port", str(port), f"serve.systems=[{args.systems}]", *args.overrides]
    logger.info("starting: %s", " ".join(cmd))
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(args.server_log, "w"))


def wait_health(url: str, proc: subprocess.Popen, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"urllm serve exited with {proc.returncode}; see the server log")
        try:
            return httpx.get(f"{url}/health", timeout=2.0).json()
        except httpx.HTTPError:
            time.sleep(1.0)
    raise SystemExit(f"urllm serve did not answer /health within {timeout_s:.0f} s")


async def load(url: str, bodies: list[dict], concurrency: int, timeout_s: float) -> dict:
    """Send every body once from ``concurrency`` clients; latencies of the successful ones."""
    queue: asyncio.Queue = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    latencies: list[float] = []
    errors: list[str] = []
    sizes: list[int] = []

    async def client(http: httpx.AsyncClient) -> None:
        while True:
            try:
                body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            start = time.perf_counter()
            try:
                r = await http.post(f"{url}/recommend", json=body, timeout=timeout_s)
                ok = r.status_code == 200
            except httpx.HTTPError as exc:
                ok, r = False, exc
            if ok:
                latencies.append(time.perf_counter() - start)
                sizes.append(r.json()["batch"]["size"])
            else:
                errors.append(str(getattr(r, "text", r))[:200])

    start = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    wall = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(bodies),
        "ok": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 2) if wall else None,
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p95_ms": round(float(np.percentile(ms, 95)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
        "mean_batch_size": round(float(np.mean(sizes)), 2) if sizes else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--systems", default="graph,urllm", help="comma-separated systems to load and measure")
    p.add_argument("--requests", type=int, default=200, help="requests per (system, concurrency)")
    p.add_argument("--concurrency", default="1,4,16", help="comma-separated numbers of concurrent clients")
    p.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, seconds")
    p.add_argument("--startup-timeout", type=float, default=900.0, help="seconds to wait for /health")
    p.add_argument("--server-log", default="bench_serve_server.log", help="the server's stderr")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per request
    if not 1 <= args.requests <= 10_000:
        p.error("--requests must be in 1..10000 (a bounded test)")
    levels = [int(c) for c in args.concurrency.split(",") if c]
    if any(not 1 <= c <= 64 for c in levels):
        p.error("--concurrency levels must be in 1..64")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    info = machine()
    proc = start_server(args, port)
    try:
        t0 = time.perf_counter()
        health = wait_health(url, proc, args.startup_timeout)
        logger.info(
            "server up after %.1f s (its own start-up: %s s)",
            time.perf_counter() - t0,
            health["startup_seconds"],
        )
        users = [u["user"] for u in httpx.get(f"{url}/users", params={"limit": 100}).json()["users"]]
        domains = health["domains"]
        results = []
        for system in args.systems.split(","):
            bodies = [
                {"user": users[i % len(users)], "domain": domains[i % 2], "k": 10, "system": system}
                for i in range(args.requests)
            ]
            asyncio.run(load(url, bodies[: min(4, len(bodies))], 1, args.timeout))  # warm the path
            for c in levels:
                row = {"system": system, **asyncio.run(load(url, bodies, c, args.timeout))}
                logger.info("%s", json.dumps(row))
                results.append(row)
        out = {
            "machine": info,
            "server": {k: health[k] for k in ("run_dir", "systems", "startup_seconds", "n_users", "n_items")},
            "batching": httpx.get(f"{url}/health").json()["batching"],
            "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
            "results": results,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
