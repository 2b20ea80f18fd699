"""Render one retrieval-augmented prompt and fit it into a token budget.

The user turn reads: the instruction (naming the target domain); the similar users' items (per
neighbour, most similar first: its target-domain items, then its other-domain items, each oldest
first); the user's own history (domain-tagged, most recent last); the request for a new item of the
target domain. The chat template of the tokenizer wraps it (ending with the assistant turn opening),
or ``plain_template`` when the tokenizer has none.

Budget: the *rendered* prompt is counted in tokens of the model's tokenizer. While it is over
``max_tokens`` whole items are dropped (never part of a title) in a fixed order: first the user's own
history beyond its ``min_history_items`` most recent items, oldest first; then neighbours' items
(other-domain before target-domain, then the oldest, then the least similar neighbour's); finally the
rest of the user's history, oldest first. So a small budget keeps both the user's recent items and
the retrieved ones, instead of spending it all on a long history. The number of
dropped items is found by bisection with an exact count at each step; the result is always counted
exactly, so every prompt is within budget.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from urllm.configuration import ConfigError
from urllm.data.schema import Catalogue, Record
from urllm.grounding.listwise import head_words
from urllm.prompts.config import PromptConfig

logger = logging.getLogger(__name__)

_SENTINEL = "\x00URLLM_BODY\x00"


def count_tokens(tokenizer: Any, text: str) -> int:
    """Tokens of ``text`` as the model sees it (specials of the chat template are in the text already)."""
    return len(tokenizer.encode(text, add_special_tokens=False))


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None)) and callable(
        getattr(tokenizer, "apply_chat_template", None)
    )


@dataclass
class BuiltPrompt:
    """A rendered prompt and what went into it."""

    text: str
    n_tokens: int
    neighbours: list[str]  # ids of the neighbours with at least one item in the prompt
    n_neighbour_items: int
    n_history_items: int
    n_dropped: int  # items removed by the budget (after the per-source caps)
    history_cut: bool = False  # the budget removed some of the user's own history
    items: list[int] = field(default_factory=list)  # every item id shown, in prompt order


@dataclass
class _Item:
    item: int
    source: int  # neighbour rank (0 = most similar), or -1 for the user's own history


class PromptBuilder:
    """Args:
    cfg: templates and budget.
    catalogue: item titles and domains.
    tokenizer: anything with ``encode(text, add_special_tokens=False)``; with ``apply_chat_template``
        and a ``chat_template`` it wraps the prompt in the chat format when ``use_chat_template``.
    """

    def __init__(
        self, cfg: PromptConfig, catalogue: Catalogue, tokenizer: Any, use_chat_template: bool = True
    ):
        self.cfg = cfg
        self.cat = catalogue
        self.tok = tokenizer
        self.chat = use_chat_template and has_chat_template(tokenizer)
        self.names = [cfg.domain_names.get(d, d) for d in catalogue.domains]
        self._prefix, self._suffix = self._wrap_parts()
        self._line_cost: dict[str, int] = {}  # cache of estimate(): token count per distinct line
        for d in (0, 1):  # the budget must at least hold the prompt without any item
            empty = count_tokens(tokenizer, self.wrap(self.body(Record("", (), -1, d), [], [])))
            if empty > cfg.max_tokens:
                raise ConfigError(
                    f"prompts.max_tokens={cfg.max_tokens} is smaller than a prompt without any item "
                    f"({empty} tokens)"
                )

    # ------------------------------------------------------------------ rendering

    def _render_chat(self, body: str) -> str:
        messages = [{"role": "user", "content": body}]
        if self.cfg.system_prompt:
            messages.insert(0, {"role": "system", "content": self.cfg.system_prompt})
        return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _wrap_parts(self) -> tuple[str, str] | tuple[None, None]:
        """Prefix/suffix around the body, so the (slow) template renders once; None if not separable."""
        if not self.chat:
            return None, None
        whole = self._render_chat(_SENTINEL)
        if whole.count(_SENTINEL) != 1:
            return None, None
        prefix, suffix = whole.split(_SENTINEL)
        probe = "probe body\n- line"
        return (prefix, suffix) if self._render_chat(probe) == prefix + probe + suffix else (None, None)

    def wrap(self, body: str) -> str:
        """The full prompt text: chat template (ending with the assistant opening) or plain template."""
        if not self.chat:
            return self.cfg.plain_template.format(system=self.cfg.system_prompt, body=body)
        if self._prefix is not None:
            return self._prefix + body + self._suffix
        return self._render_chat(body)

    def title(self, item: int) -> str:
        """The item's title as prompts show it: its first ``title_max_words`` words."""
        return head_words(self.cat.titles[item], self.cfg.title_max_words)

    def _line(self, item: int) -> str:
        d = int(self.cat.item_domain[item])
        return self.cfg.item_line.format(
            tag=self.cat.domains[d], domain=self.names[d], title=self.title(item)
        )

    def candidate_block(self, domain: int, candidates: Sequence[int], labels: Sequence[str]) -> str:
        """The listwise section: one ``rank_line`` per candidate, behind its one-token label."""
        c = self.cfg
        lines = [c.rank_header.format(domain=self.names[domain])]
        lines += [
            c.rank_line.format(label=lab, title=self.title(i))
            for i, lab in zip(candidates, labels, strict=True)
        ]
        return "\n".join(lines)

    def body(
        self,
        record: Record,
        neighbour_items: list[list[_Item]],
        history: list[_Item],
        candidates: str = "",
    ) -> str:
        """The user turn; empty sections are left out. ``candidates``: a :meth:`candidate_block`."""
        c = self.cfg
        dom = self.names[record.domain]
        parts = [c.instruction.format(domain=dom)]
        blocks = []
        for rank, items in enumerate(neighbour_items):
            if items:
                lines = [c.neighbour_header.format(n=rank + 1, domain=dom)] + [
                    self._line(x.item) for x in items
                ]
                blocks.append("\n".join(lines))
        if blocks:
            parts.append(c.neighbours_header.format(domain=dom) + "\n" + "\n".join(blocks))
        if history:
            parts.append(
                c.history_header.format(domain=dom) + "\n" + "\n".join(self._line(x.item) for x in history)
            )
        if candidates:
            parts.append(candidates)
            parts.append(c.rank_request.format(domain=dom))
        else:
            parts.append(c.request.format(domain=dom))
        return "\n\n".join(parts)

    # ------------------------------------------------------------------ selection and budget

    def _neighbour_items(
        self, domain: int, seq: Sequence[int], rank: int, known: set[int]
    ) -> tuple[list[_Item], list[_Item]]:
        """(target-domain items, other-domain items) of one neighbour, oldest first, capped, no repeats.

        Items in ``known`` (the user's own history, when ``skip_known_items``) are left out.
        """
        seen: set[int] = set(known)
        recent_first = []
        for i in reversed(seq):  # keep the most recent occurrence of a repeated item
            if i not in seen:
                seen.add(i)
                recent_first.append(i)
        ordered = recent_first[::-1]
        tgt = [i for i in ordered if self.cat.item_domain[i] == domain]
        oth = [i for i in ordered if self.cat.item_domain[i] != domain]
        n_tgt, n_oth = self.cfg.max_items_per_neighbour, self.cfg.max_other_items_per_neighbour
        tgt = tgt[-n_tgt:] if n_tgt else []  # the most recent ones
        oth = oth[-n_oth:] if n_oth else []
        return [_Item(i, rank) for i in tgt], [_Item(i, rank) for i in oth]

    def estimate(self, text: str) -> int:
        """Token count of ``text`` as the sum of its lines' counts (cached): cheap, usually exact."""
        total = 0
        for line in text.split("\n"):
            cost = self._line_cost.get(line)
            if cost is None:
                cost = self._line_cost[line] = count_tokens(self.tok, line + "\n")
            total += cost
        return total

    def _fit(self, render, n_items: int) -> tuple[int, str, int]:
        """(m, text, exact tokens) for the fewest drops ``m`` whose render fits the budget.

        Bisection runs on the line-sum estimate; exact counts then confirm (and correct) the choice,
        so the returned prompt is always within budget even where the estimate is off.
        """
        budget = self.cfg.max_tokens
        exact: dict[int, tuple[str, int]] = {}

        def count(m: int) -> int:
            if m not in exact:
                text = render(m)
                exact[m] = (text, count_tokens(self.tok, text))
            return exact[m][1]

        lo, hi = -1, n_items  # estimate: render(lo) over budget (lo = -1: none known), render(hi) within
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.estimate(render(mid)) <= budget:
                hi = mid
            else:
                lo = mid
        m = hi
        if count(m) <= budget:
            # if the estimate over-counted, fewer drops may fit too; shift it by its error at m to decide
            err = self.estimate(render(m)) - count(m)
            while m > 0 and (self.estimate(render(m - 1)) - err <= budget) and count(m - 1) <= budget:
                m -= 1
        else:
            # the estimate under-counted: gallop up to a fitting m, then bisect back
            lo, step = m, 1
            while count(min(lo + step, n_items)) > budget:
                if lo + step >= n_items:
                    raise RuntimeError(f"prompt does not fit {budget} tokens even without items")
                lo, step = lo + step, step * 2
            hi = min(lo + step, n_items)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if count(mid) <= budget else (mid, hi)
            m = hi
        return m, *exact[m]

    def build(
        self,
        record: Record,
        neighbours: Sequence[tuple[str, Sequence[int]]],
        candidates: Sequence[int] = (),
        labels: Sequence[str] = (),
    ) -> BuiltPrompt:
        """Render the prompt of ``record`` with the first ``n_neighbours`` of ``neighbours``.

        Args:
            record: the query; only its ``history`` and target ``domain`` are read (never its target).
            neighbours: (user id, training sequence) of similar training users, most similar first.
            candidates: listwise ranking (grounding mode ``rank``): items listed last, in this order,
                behind ``labels``; the request then asks for a label. The list is never cut by the
                budget (only neighbours' and history items are).
        """
        c = self.cfg
        block = self.candidate_block(record.domain, candidates, labels) if len(candidates) else ""
        per_nbr: list[list[_Item]] = []
        drop_keys: list[tuple[tuple, _Item]] = []
        known = set(record.history) if c.skip_known_items else set()
        for rank, (_, seq) in enumerate(neighbours[: c.n_neighbours]):
            tgt, oth = self._neighbour_items(record.domain, seq, rank, known)
            per_nbr.append(tgt + oth)  # target-domain items first
            for is_tgt, lst in ((1, tgt), (0, oth)):
                for pos, x in enumerate(lst):
                    age = len(lst) - 1 - pos
                    drop_keys.append(((is_tgt, -age, -rank), x))
        hist_ids = list(record.history)
        if c.max_history_items:
            hist_ids = hist_ids[-c.max_history_items :]
        history = [_Item(i, -1) for i in hist_ids]
        keep_recent = min(c.min_history_items, len(history))
        old_history, recent_history = (
            history[: len(history) - keep_recent],
            history[len(history) - keep_recent :],
        )
        neighbour_order = [x for _, x in sorted(drop_keys, key=lambda kv: kv[0])]
        drop_order = old_history + neighbour_order + recent_history  # each history part oldest first

        def render(m: int) -> str:
            gone = {id(x) for x in drop_order[:m]}
            return self.wrap(
                self.body(
                    record,
                    [[x for x in items if id(x) not in gone] for items in per_nbr],
                    [x for x in history if id(x) not in gone],
                    block,
                )
            )

        m, text, n = self._fit(render, len(drop_order))
        gone = {id(x) for x in drop_order[:m]}
        kept_nbr = [[x for x in items if id(x) not in gone] for items in per_nbr]
        kept_hist = [x for x in history if id(x) not in gone]
        shown = sorted({x.source for items in kept_nbr for x in items})
        ids = [neighbours[rank][0] for rank in shown]
        return BuiltPrompt(
            text=text,
            n_tokens=n,
            neighbours=ids,
            n_neighbour_items=sum(len(x) for x in kept_nbr),
            n_history_items=len(kept_hist),
            n_dropped=m,
            history_cut=len(kept_hist) < len(history),
            items=[x.item for items in kept_nbr for x in items] + [x.item for x in kept_hist],
        )
