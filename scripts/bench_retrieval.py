#!/usr/bin/env python
"""Benchmark user retrieval: FAISS Flat vs approximate indexes vs a dense numpy matrix product.

    python scripts/bench_retrieval.py --threads 1 --out docs/bench_retrieval.json

For every (number of users, dimension): synthetic user embeddings drawn around random centres (a
Gaussian mixture, L2-normalised), separate query users from the same mixture, and top-k search by
inner product. Reported per method: build time, queries per second, recall@k against exact search
(the dense numpy product), and memory. The dense product is how the reference code retrieves (a
test x train score matrix); here it runs in query chunks, and ``full_matrix_gb`` says what the
reference's single float64 matrix would take. Prints JSON; ``--out`` also writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000", help="numbers of indexed users")
    p.add_argument("--dims", default="64,656", help="embedding dimensions")
    p.add_argument("--queries", type=int, default=1000, help="query users per configuration")
    p.add_argument("--k", type=int, default=10, help="neighbours per query (recall@k)")
    p.add_argument("--centres", type=int, default=256, help="mixture centres of the synthetic users")
    p.add_argument(
        "--spread", type=float, default=1.0, help="noise scale around a centre (centres ~ N(0, 1))"
    )
    p.add_argument("--nprobe", type=int, default=16, help="IVF lists visited per query")
    p.add_argument("--ef-search", type=int, default=64, help="HNSW search beam")
    p.add_argument(
        "--hnsw-max-cells",
        type=float,
        default=7e7,
        help="build HNSW32 only when users x dims <= this (its single-thread build is slow)",
    )
    p.add_argument("--threads", type=int, default=1, help="BLAS and FAISS threads")
    p.add_argument("--chunk", type=int, default=100, help="query chunk of the dense numpy product")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the JSON here")
    return p.parse_args(argv)


def synthetic_users(n: int, dim: int, centres, spread: float, rng):
    import numpy as np

    x = centres[rng.integers(len(centres), size=n)]
    x = x + spread * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def dense_numpy_topk(x, q, k: int, chunk: int):
    """Exact top-k by a dense (query chunk x users) score matrix, as the reference code does."""
    import numpy as np

    out = np.empty((len(q), k), dtype=np.int64)
    for lo in range(0, len(q), chunk):
        s = q[lo : lo + chunk] @ x.T  # (B, N)
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
        out[lo : lo + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def recall(found, truth) -> float:
    return float(sum(len(set(a) & set(b)) for a, b in zip(found, truth, strict=True)) / truth.size)


def bench_one(n: int, dim: int, args, rng) -> tuple[list[dict], list[str]]:
    import numpy as np

    from urllm.retrieval.index import FaissUserIndex

    centres = rng.standard_normal((args.centres, dim), dtype=np.float32)
    x = synthetic_users(n, dim, centres, args.spread, rng)
    q = synthetic_users(args.queries, dim, centres, args.spread, rng)
    ids = [str(i) for i in range(n)]
    rows, skipped = [], []

    t = time.perf_counter()
    truth = dense_numpy_topk(x, q, args.k, args.chunk)
    dt = time.perf_counter() - t
    rows.append(
        {
            "method": "numpy dense product",
            "build_s": 0.0,
            "qps": round(args.queries / dt, 1),
            f"recall@{args.k}": 1.0,
            "memory_gb": round((x.nbytes + args.chunk * n * 4) / 1e9, 3),
            "full_matrix_gb": round(args.queries * n * 8 / 1e9, 3),
        }
    )

    nlist = max(16, int(round(np.sqrt(n))))
    factories = ["Flat", f"IVF{nlist},Flat"]
    if n * dim <= args.hnsw_max_cells:
        factories.append("HNSW32")
    else:
        skipped.append(f"HNSW32 at {n} x {dim}: users x dims > --hnsw-max-cells={args.hnsw_max_cells:g}")
    for factory in factories:
        index = FaissUserIndex(factory, normalize=False, nprobe=args.nprobe, ef_search=args.ef_search)
        t = time.perf_counter()
        index.build(x, ids)
        build = time.perf_counter() - t
        t = time.perf_counter()
        pos, _ = index.search(q, args.k)
        dt = time.perf_counter() - t
        name = factory + (
            f" (nprobe {args.nprobe})"
            if "IVF" in factory
            else f" (efSearch {args.ef_search})"
            if "HNSW" in factory
            else ""
        )
        rows.append(
            {
                "method": f"faiss {name}",
                "build_s": round(build, 2),
                "qps": round(args.queries / dt, 1),
                f"recall@{args.k}": round(recall(pos, truth), 4),
                "memory_gb": round(_index_bytes(index.index) / 1e9, 3),
            }
        )
        del index
    for r in rows:
        r.update(n_users=n, dim=dim)
    return rows, skipped


def _index_bytes(index) -> int:
    """Serialised size of a FAISS index (its memory footprint, near enough)."""
    import faiss

    return int(faiss.serialize_index(index).nbytes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy / faiss load their thread pools
    import faiss
    import numpy as np

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    results, skipped = [], []
    for n in (int(s) for s in args.sizes.split(",")):
        for dim in (int(d) for d in args.dims.split(",")):
            print(f"benchmarking {n} users x {dim} dims ...", file=sys.stderr, flush=True)
            rows, skip = bench_one(n, dim, args, rng)
            results += rows
            skipped += skip
    report = {
        "command": "python scripts/bench_retrieval.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "threads": args.threads,
        "queries": args.queries,
        "k": args.k,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "faiss": faiss.__version__,
        "results": results,
        "skipped": skipped,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
