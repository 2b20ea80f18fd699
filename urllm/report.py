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

import numpy as np

from urllm.run_layout import RunLayout

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


def _domains(systems: dict[str, dict]) -> list[str]:
    return [d for d, m in next(iter(systems.values()))["per_domain"].items() if "n" in m]


def _fmt_interval(p: dict) -> str:
    return f"{p['diff']:+.4f} [{p['lo']:+.4f}, {p['hi']:+.4f}]"


def _metric_table(systems: dict[str, dict]) -> list[str]:
    lines = []
    for d in _domains(systems):
        paired = [res["paired"] for res in systems.values() if res.get("paired")]
        base = paired[0]["baseline"] if paired else None
        extra = [f"MRR vs {base} (95 % CI)", f"NDCG@10 vs {base} (95 % CI)", "better / worse"] if base else []
        cols = ["n", *MAIN_METRICS, *extra]
        lines += [f"### {d}", "", "| system | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for name, res in systems.items():
            m = res["per_domain"].get(d, {})
            cells = [str(m.get("n", "–"))] + [f"{m[k]:.4f}" if k in m else "–" for k in MAIN_METRICS]
            if base:
                p = res.get("paired", {}).get(d)
                if p:
                    cells += [_fmt_interval(p["MRR"]), _fmt_interval(p["NDCG@10"]) if "NDCG@10" in p else "–"]
                    cells.append(f"{p['better']:.0%} / {p['worse']:.0%}")
                else:
                    cells += ["(baseline)" if name == base else "–", "", ""]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def plot_metrics(
    systems: dict[str, dict], out: Path, per_record: dict[str, dict] | None = None, metric: str = "MRR"
) -> None:
    """Bars per system and domain with 95 % bootstrap whiskers (from the per-record files) and n."""
    from urllm.eval.paired import mean_interval

    plt = _plt()
    domains = _domains(systems)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(systems) * len(domains)), 4.5))
    width = 0.8 / len(systems)
    for i, (name, res) in enumerate(systems.items()):
        vals = [res["per_domain"].get(d, {}).get(metric, 0.0) for d in domains]
        err = None
        rows = (per_record or {}).get(name)
        if rows is not None:
            iv = [mean_interval(rows.values[metric][np.array(rows.domains) == d]) for d in domains]
            err = [[v - x["lo"] for v, x in zip(vals, iv, strict=True)],
                   [x["hi"] - v for v, x in zip(vals, iv, strict=True)]]  # fmt: skip
        ns = "/".join(str(res["per_domain"].get(d, {}).get("n", 0)) for d in domains)
        label = f"{name} (n={ns})" + ("" if err is not None else ", no interval")
        ax.bar([j + i * width for j in range(len(domains))], vals, width, yerr=err, capsize=3, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(domains))], domains)
    ax.set_ylabel(metric)
    whiskers = "whiskers: 95 % bootstrap intervals" if per_record else "no per-record files: no intervals"
    ax.set_title(f"{metric} per target domain ({whiskers})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_cold_start(systems: dict[str, dict], out: Path, metric: str = "MRR") -> None:
    """Grouped bars per history-length bucket, n per bucket on the axis, one legend for all panels."""
    plt = _plt()
    domains = _domains(systems)
    first = next(iter(systems.values()))
    fig, axes = plt.subplots(1, len(domains), figsize=(6 * len(domains), 4.5), squeeze=False)
    width = 0.8 / len(systems)
    handles = []
    for ax, d in zip(axes[0], domains, strict=True):
        buckets = list(first.get("cold_start", {}).get(d, {}))
        for i, (name, res) in enumerate(systems.items()):
            cs = res.get("cold_start", {}).get(d, {})
            vals = [cs.get(b, {}).get(metric, 0.0) for b in buckets]
            bars = ax.bar([j + i * width for j in range(len(buckets))], vals, width, label=name)
            if ax is axes[0][0]:
                handles.append(bars)
        labels = [f"{b}\n(n={first['cold_start'][d][b]['n']})" for b in buckets]
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(buckets))], labels, fontsize=8)
        ax.set_title(f"{d}: {metric} by target-domain items in the history")
        ax.set_xlabel("target-domain items in the history (bucket)")
        ax.set_ylabel(metric)
    fig.legend(handles, list(systems), loc="upper center", ncol=min(len(systems), 6), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _grounds(name: str) -> bool:
    """Every LLM system hands fusion grounded items except the no-grounding ablation (exact titles only)."""
    return not name.endswith("no-grounding")


def plot_ood(systems: dict[str, dict], out: Path) -> bool:
    rows = [
        (name, d, m) for name, res in systems.items() for d, m in res["per_domain"].items() if _generates(m)
    ]
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(rows)), 4.5))
    labels = [f"{name}\n{d}" for name, d, _ in rows]
    raw = ax.bar([i - 0.2 for i in range(len(rows))], [m["raw_ood_rate"] for *_, m in rows], 0.4,
                 label="raw generation")  # fmt: skip
    ax.bar_label(raw, fmt="%.2f", fontsize=7)
    grounded = [(i, m.get("ood_rate", 0.0)) for i, (name, _, m) in enumerate(rows) if _grounds(name)]
    if grounded:
        xs, ys = zip(*grounded, strict=True)
        after = ax.bar([x + 0.2 for x in xs], ys, 0.4, label="after grounding")
        ax.bar_label(after, fmt="%.2f", fontsize=7)  # a 0 is visible as its label
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("out-of-domain rate")
    ax.set_title("Out-of-domain recommendations:\nraw LLM output vs after grounding", fontsize=10)
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
            if len(pts) > 1 and ("loss" in k or "mrr" in k.lower()):
                ax.plot(*zip(*pts, strict=True), marker="o", markersize=3, label=k)
        ax.set_title(f"{name} training")
        ax.set_xlabel(x_key or "record")
        ax.set_ylabel("loss / MRR")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def _training_logs(layout: RunLayout) -> dict[str, list[dict]]:
    """Every training log of the run: the fine-tune's ``train_log.jsonl`` and the graph's epoch history."""
    files = {p.parent.name: p for p in sorted(layout.root.glob("*/train_log.jsonl"))}
    if (layout.finetune / "train_log.jsonl").is_file():  # finetune.output_dir may lie elsewhere
        files["finetune"] = layout.finetune / "train_log.jsonl"
    logs = {name: read_log(p) for name, p in files.items()}
    states = sorted(layout.graph.rglob("train_state.json"), key=lambda p: p.stat().st_mtime)
    if states:  # the newest complete checkpoint's state holds the whole epoch history
        try:
            logs["graph"] = json.loads(states[-1].read_text()).get("history", [])
        except json.JSONDecodeError:
            logger.warning("%s: unreadable, the graph curves are left out", states[-1])
    return logs


def _per_record(split_dir: Path, systems: dict[str, dict]) -> dict:
    """The standard-protocol per-record results of each system, where the evaluate stage wrote them."""
    from urllm.eval.per_record import read_per_record

    out = {}
    for name in systems:
        path = split_dir / "systems" / f"{name}.per_record.jsonl"
        if path.is_file():
            out[name] = read_per_record(path)["standard"]
    return out


def _simulated_cold_start(systems: dict[str, dict]) -> list[str]:
    cuts = list(next(iter(systems.values())).get("simulated_cold_start", {}))
    if not cuts:
        return []
    lines = [
        "## Simulated cold start",
        "",
        "Copies of every record with its target-domain history cut to its last N items (the other domain "
        "kept whole); every system on the same copies. MRR, with the paired 95 % interval vs the baseline.",
        "",
    ]
    for d in _domains(systems):
        lines += [f"### {d}", "", "| system | " + " | ".join(f"N = {c}" for c in cuts) + " |",
                  "|---|" + "---|" * len(cuts)]  # fmt: skip
        for name, res in systems.items():
            cells = []
            for c in cuts:
                cs = res.get("simulated_cold_start", {}).get(c, {})
                m, p = cs.get("per_domain", {}).get(d), cs.get("paired", {}).get(d)
                cell = f"{m['MRR']:.4f} (n={m['n']})" if m else "–"
                cells.append(cell + (f", {_fmt_interval(p['MRR'])}" if p else ""))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def write_report(layout: RunLayout, split: str = "valid") -> Path:
    """Write ``<run_dir>/report/report.md`` and its plots; returns the report path."""
    split_dir = layout.evaluate(split)
    results_file = layout.results(split)
    if not results_file.is_file():
        raise FileNotFoundError(f"{results_file} not found: run `urllm pipeline` (evaluate stage) first")
    systems = json.loads(results_file.read_text())["systems"]
    if not systems:
        raise ValueError(f"{results_file} lists no systems")
    out = layout.report
    out.mkdir(parents=True, exist_ok=True)
    first = next(iter(systems.values()))
    ns = ", ".join(f"{d} n = {first['per_domain'][d]['n']}" for d in _domains(systems))
    scope = f"subset: {first['subset']}" if first.get("subset") else "all records"
    lines = [
        f"# urllm report: {layout.root.name}",
        "",
        f"Split `{split}` ({scope}; {ns}), {first['protocol']} ranking over the target domain.",
        "",
    ]
    per_record = _per_record(split_dir, systems)
    lines += ["## Metrics per target domain", "", "![MRR per domain](metrics.png)", ""] + _metric_table(
        systems
    )
    plot_metrics(systems, out / "metrics.png", per_record)
    plot_cold_start(systems, out / "cold_start.png")
    lines += [
        "## Cold start",
        "",
        "MRR by the number of target-domain items in the user's history (n per bucket in the header).",
        "",
        "![cold start](cold_start.png)",
        "",
    ]
    for d in _domains(systems):
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
    lines += _simulated_cold_start(systems)
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
    if plot_curves(_training_logs(layout), out / "curves.png"):
        lines += ["## Training curves", "", "![training curves](curves.png)", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    logger.info("wrote %s", report)
    return report
