"""Does the listwise ranker read its prompt? Label-profile statistics of rank-mode JSONL rows; one JSON line.

    python scripts/label_profile.py runs/art-office/infer/valid/rank.jsonl \
        [--against runs/art-office/infer/valid/rank-no-retrieval.jsonl]

Over the rows that went through the LLM (``llm_skipped`` rows are left out): ``label_share`` is the share
of the label log-probs' variance explained by the label alone (1.0: the same scores for every prompt,
whatever the user, the neighbours or the candidates), ``argmax_counts`` how often each label position
is the top answer. With ``--against`` (rows of another run on the same records, e.g. the no-retrieval
variant): ``corr`` of the row-centred log-probs and the share of records with the same top answer.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def llm_rows(path: Path) -> dict[str, list[float]]:
    """Record key -> label log-probs of the rows that went through the LLM."""
    out = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{n}: not a JSON line ({exc})") from None
            if "label_logprobs" not in row:
                raise SystemExit(f"{path}:{n}: no label_logprobs (not a rank-mode row)")
            if not row.get("llm_skipped"):
                out[row["key"]] = row["label_logprobs"]
    return out


def profile(scores: np.ndarray) -> dict:
    share = 1.0 - float((scores - scores.mean(0)).var() / scores.var()) if scores.var() > 0 else 1.0
    counts = np.bincount(scores.argmax(1), minlength=scores.shape[1])
    return {"n": len(scores), "label_share": round(share, 4), "argmax_counts": counts.tolist()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rows", type=Path, help="rank-mode JSONL of an inference run")
    p.add_argument("--against", type=Path, help="another run's JSONL on the same records")
    args = p.parse_args(argv)
    a = llm_rows(args.rows)
    keys = sorted(a)
    out: dict = {"rows": str(args.rows)}
    if args.against:
        b = llm_rows(args.against)
        keys = [k for k in keys if k in b]
        out["against"] = str(args.against)
    widths = {len(a[k]) for k in keys}
    if not keys or len(widths) != 1:
        raise SystemExit(f"{args.rows}: no LLM rows with lists of one length ({sorted(widths)})")
    sa = np.array([a[k] for k in keys])
    out |= profile(sa)
    if args.against:
        sb = np.array([b[k] for k in keys])
        ca, cb = sa - sa.mean(1, keepdims=True), sb - sb.mean(1, keepdims=True)
        out["against_label_share"] = profile(sb)["label_share"]
        out["corr"] = round(float(np.corrcoef(ca.ravel(), cb.ravel())[0, 1]), 4)
        out["same_top_answer"] = round(float(np.mean(sa.argmax(1) == sb.argmax(1))), 4)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
