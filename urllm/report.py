"""``urllm report``: a Markdown report with PNG plots from a pipeline run directory.

Reads ``evaluate/<split>/results.json`` (every system's metrics) and the training logs the stages wrote
(``*/train_log.jsonl``), and writes ``report/report.md`` with:
metrics per domain for every system, the cold-start breakdown, out-of-domain rates before and after
grounding (LLM systems), and training curves.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

MAIN_METRICS = ("MRR", "NDCG@5", "NDCG@10", "HR@1", "HR@5", "HR@10")
OOD_KEYS = ("raw_ood_rate", "raw_valid_title_rate", "raw_in_history_rate", "ood_rate")


def _generates(m: dict) -> bool:
    """Per-domain metrics of an LLM system that generates text (re-ranking has no raw rates)."""
    return m.get("raw_ood_rate") is not None


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _metric_table(systems: dict[str, dict]) -> list[str]:
    domains = list(next(iter(systems.values()))["per_domain"])
    lines = []
    for d in domains:
        lines += [
            f"### {d}",
            "",
            "| system | n | " + " | ".join(MAIN_METRICS) + " |",
            "|---" * (len(MAIN_METRICS) + 2) + "|",
        ]
        for name, res in systems.items():
            m = res["per_domain"].get(d, {})
            cells = " | ".join(f"{m[k]:.4f}" if k in m else "–" for k in MAIN_METRICS)
            lines.append(f"| {name} | {m.get('n', '–')} | {cells} |")
        lines.append("")
    return lines


def plot_metrics(systems: dict[str, dict], out: Path, metric: str = "MRR") -> None:
    plt = _plt()
    domains = list(next(iter(systems.values()))["per_domain"])
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(systems) * len(domains)), 4))
    width = 0.8 / len(systems)
    for i, (name, res) in enumerate(systems.items()):
        vals = [res["per_domain"].get(d, {}).get(metric, 0.0) for d in domains]
        ax.bar([j + i * width for j in range(len(domains))], vals, width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(domains))], domains)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per target domain")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_cold_start(systems: dict[str, dict], out: Path, metric: str = "MRR") -> None:
    plt = _plt()
    domains = list(next(iter(systems.values()))["per_domain"])
    fig, axes = plt.subplots(1, len(domains), figsize=(6 * len(domains), 4), squeeze=False)
    for ax, d in zip(axes[0], domains, strict=True):
        for name, res in systems.items():
            buckets = res.get("cold_start", {}).get(d, {})
            if buckets:
                ax.plot(list(buckets), [b[metric] for b in buckets.values()], marker="o", label=name)
        ax.set_title(f"{d}: {metric} by target-domain history length")
        ax.set_xlabel("target-domain items in the history")
        ax.set_ylabel(metric)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_ood(systems: dict[str, dict], out: Path) -> bool:
    rows = [
        (name, d, m) for name, res in systems.items() for d, m in res["per_domain"].items() if _generates(m)
    ]
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(rows)), 4))
    labels = [f"{name}\n{d}" for name, d, _ in rows]
    ax.bar(
        [i - 0.2 for i in range(len(rows))],
        [m["raw_ood_rate"] for *_, m in rows],
        0.4,
        label="raw generation",
    )
    ax.bar(
        [i + 0.2 for i in range(len(rows))],
        [m.get("ood_rate", 0.0) for *_, m in rows],
        0.4,
        label="after grounding",
    )
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("out-of-domain rate")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def read_log(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("%s: skipping an unreadable log line", path)
    return rows


def plot_curves(logs: dict[str, list[dict]], out: Path) -> bool:
    """One panel per log: every numeric series against step (or epoch)."""
    logs = {k: v for k, v in logs.items() if v}
    if not logs:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(logs), figsize=(6 * len(logs), 4), squeeze=False)
    for ax, (name, rows) in zip(axes[0], logs.items(), strict=True):
        x_key = "step" if "step" in rows[0] else "epoch" if "epoch" in rows[0] else None
        keys = sorted(
            {
                k
                for r in rows
                for k, v in r.items()
                if isinstance(v, (int, float)) and k not in ("step", "epoch")
            }
        )
        for k in keys:
            pts = [(r.get(x_key, i), r[k]) for i, r in enumerate(rows) if isinstance(r.get(k), (int, float))]
            if len(pts) > 1 and ("loss" in k or "MRR" in k):
                ax.plot(*zip(*pts, strict=True), label=k)
        ax.set_title(name)
        ax.set_xlabel(x_key or "record")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def write_report(run_dir: Path, split: str = "valid") -> Path:
    """Write ``<run_dir>/report/report.md`` and its plots; returns the report path."""
    results_file = run_dir / "evaluate" / split / "results.json"
    if not results_file.is_file():
        raise FileNotFoundError(f"{results_file} not found: run `urllm pipeline` (evaluate stage) first")
    systems = json.loads(results_file.read_text())["systems"]
    if not systems:
        raise ValueError(f"{results_file} lists no systems")
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    first = next(iter(systems.values()))
    lines = [
        f"# urllm report: {run_dir.name}",
        "",
        f"Split `{split}`, {first['protocol']} ranking over the target domain.",
        "",
    ]
    lines += ["## Metrics per target domain", "", "![MRR per domain](metrics.png)", ""] + _metric_table(
        systems
    )
    plot_metrics(systems, out / "metrics.png")
    plot_cold_start(systems, out / "cold_start.png")
    lines += [
        "## Cold start",
        "",
        "MRR by the number of target-domain items in the user's history.",
        "",
        "![cold start](cold_start.png)",
        "",
    ]
    for d in first["per_domain"]:
        buckets = list(first["cold_start"].get(d, {}))
        lines += [
            f"### {d}",
            "",
            "| system | " + " | ".join(f"{b} (n={first['cold_start'][d][b]['n']})" for b in buckets) + " |",
        ]
        lines += ["|---|" + "---|" * len(buckets)]
        for name, res in systems.items():
            cs = res.get("cold_start", {}).get(d, {})
            lines.append(
                f"| {name} | " + " | ".join(f"{cs[b]['MRR']:.4f}" if b in cs else "–" for b in buckets) + " |"
            )
        lines.append("")
    if plot_ood(systems, out / "ood.png"):
        lines += [
            "## Out-of-domain generations",
            "",
            "![ood](ood.png)",
            "",
            "| system | domain | " + " | ".join(OOD_KEYS) + " |",
            "|---" * (2 + len(OOD_KEYS)) + "|",
        ]
        for name, res in systems.items():
            for d, m in res["per_domain"].items():
                if _generates(m):
                    cells = (f"{m[k]:.3f}" if m.get(k) is not None else "–" for k in OOD_KEYS)
                    lines.append(f"| {name} | {d} | " + " | ".join(cells) + " |")
        lines.append("")
    logs = {p.parent.name: read_log(p) for p in sorted(run_dir.glob("*/train_log.jsonl"))}
    if plot_curves(logs, out / "curves.png"):
        lines += ["## Training curves", "", "![training curves](curves.png)", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    logger.info("wrote %s", report)
    return report
