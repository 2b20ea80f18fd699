"""Plain-text rendering of one answer, for ``urllm recommend`` without ``--json``."""

from __future__ import annotations

from typing import Any


def _score(x: Any) -> str:
    return "-" if x is None else f"{float(x):.3f}"


def _item(it: dict) -> str:
    return f"{it['title']} [{it['domain']}, id {it['id']}]"


def format_answer(ans: dict[str, Any]) -> str:
    """The top-k, then the evidence: history, neighbours, candidates with their scores, grounding."""
    who = f"user {ans['user']}" if ans.get("user") is not None else "a typed history"
    lines = [f"top {ans['k']} {ans['domain']} items for {who} ({ans['system']}):"]
    shown = [*ans["items"], *(ans.get("evidence") or {}).get("candidates", [])]
    width = max((len(it["title"]) for it in shown), default=10)
    for rank, it in enumerate(ans["items"], start=1):
        lines.append(f"  {rank:>3}. {it['title']:<{width}}  id {it['id']:>6}  score {_score(it['score'])}")
    ev = ans.get("evidence")
    if not ev:
        return "\n".join(lines)
    hist = ev.get("history", [])
    lines.append(f"\nhistory ({len(hist)} items, oldest first):")
    lines += [f"  {_item(it)}" for it in hist]
    nbrs = ev.get("neighbours", [])
    lines.append(f"\nsimilar users ({len(nbrs)}):" if nbrs else "\nsimilar users: none")
    for n in nbrs:
        sim = f" (similarity {n['similarity']:.3f})" if n.get("similarity") is not None else ""
        lines.append(f"  user {n['user']}{sim}:")
        lines += [f"    {'*' if it.get('in_top_k') else ' '} {_item(it)}" for it in n.get("items", [])]
    cands = ev.get("candidates", [])
    if cands:
        lines.append(f"\ncandidates ({len(cands)}; * = in the top-k):")
        lines.append(f"    {'title':<{width}}  {'backbone':>9} {'llm':>9} {'fused':>9}")
        for c in cands:
            mark = "*" if c.get("in_top_k") else " "
            lines.append(
                f"  {mark} {c['title']:<{width}}  {_score(c.get('backbone')):>9} {_score(c.get('llm')):>9} "
                f"{_score(c.get('fused')):>9}"
            )
    g = ev.get("grounding", {})
    lines.append("\ngrounding: " + ", ".join(f"{k}={v}" for k, v in g.items()))
    return "\n".join(lines)
