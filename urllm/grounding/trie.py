"""A token-prefix trie over the catalogue titles of one domain, for constrained beam search.

Each title is tokenized exactly as it follows the prompt (no special tokens; the prompt ends with the
assistant-turn opening, so ``prompt_ids + title_ids`` is the sequence the model is trained on) and
closed with the end-of-sequence token. Beam search restricted to the trie can only emit complete
titles of the target domain: zero out-of-domain outputs by construction, K beams = K distinct titles.
Items that share a title share a leaf; the leaf keeps all their ids (the backbone orders them later).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

_LEAF = -1  # key of the item tuple in a node reached by end-of-sequence (token ids are >= 0)


class TitleTrie:
    """Nested dicts ``token -> child``; the child under ``eos`` holds ``{_LEAF: (item ids...)}``."""

    def __init__(self, eos_token_id: int) -> None:
        self.eos = eos_token_id
        self.root: dict = {}
        self.n_titles = 0
        self.max_len = 0  # longest title in tokens, eos included

    def add(self, token_ids: Sequence[int], item: int) -> None:
        """Insert one title (without eos) for ``item``; a title seen before gains another item."""
        if not token_ids:
            raise ValueError(f"item {item}: empty title token sequence")
        if self.eos in token_ids:
            raise ValueError(f"item {item}: title tokens contain the end-of-sequence token {self.eos}")
        node = self.root
        for tok in (*token_ids, self.eos):
            node = node.setdefault(int(tok), {})
        if _LEAF not in node:
            node[_LEAF] = ()
            self.n_titles += 1
        node[_LEAF] = (*node[_LEAF], int(item))
        self.max_len = max(self.max_len, len(token_ids) + 1)

    def _walk(self, prefix: Sequence[int]) -> dict | None:
        node = self.root
        for tok in prefix:
            node = node.get(int(tok))
            if node is None:
                return None
        return node

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """Tokens that may follow ``prefix`` (generated tokens so far); [] when it left the trie."""
        node = self._walk(prefix)
        return [] if node is None else [t for t in node if t != _LEAF]

    def items(self, token_ids: Sequence[int]) -> tuple[int, ...]:
        """Item ids of the complete title ``token_ids`` (a trailing eos is optional); () if none."""
        ids = list(token_ids)
        if not ids or ids[-1] != self.eos:
            ids.append(self.eos)
        node = self._walk(ids)
        return () if node is None else node.get(_LEAF, ())


def build_trie(token_ids: Sequence[Sequence[int]], items: Sequence[int], eos_token_id: int) -> TitleTrie:
    """A trie of the given titles; empty titles are skipped (an empty answer names no item)."""
    trie = TitleTrie(eos_token_id)
    skipped = 0
    for toks, item in zip(token_ids, items, strict=True):
        if len(toks) == 0:
            skipped += 1
            continue
        trie.add(toks, item)
    if skipped:
        logger.warning("%d items with an empty title left out of the trie", skipped)
    return trie


def tokenize_titles(tokenizer, titles: Sequence[str], batch_size: int = 4096) -> list[list[int]]:
    """Token ids of each title as it follows the prompt (no special tokens added)."""
    out: list[list[int]] = []
    for start in range(0, len(titles), batch_size):
        chunk = list(titles[start : start + batch_size])
        out.extend(tokenizer(chunk, add_special_tokens=False)["input_ids"])
    return out


def build_domain_tries(catalogue, tokenizer) -> list[TitleTrie]:
    """One trie per domain of ``catalogue`` (a :class:`urllm.data.schema.Catalogue`)."""
    tries = []
    for d in range(len(catalogue.domains)):
        ids = catalogue.domain_range(d)
        toks = tokenize_titles(tokenizer, [catalogue.titles[i] for i in ids])
        trie = build_trie(toks, list(ids), tokenizer.eos_token_id)
        logger.info(
            "trie %s: %d items, %d distinct titles, longest %d tokens",
            catalogue.domains[d],
            len(ids),
            trie.n_titles,
            trie.max_len,
        )
        tries.append(trie)
    return tries


def prefix_allowed_tokens_fn(
    tries: Sequence[TitleTrie], prompt_width: int, eos_token_id: int
) -> Callable[[int, object], list[int]]:
    """The ``generate(prefix_allowed_tokens_fn=...)`` callback for a left-padded batch.

    ``tries[b]`` is the trie of batch row ``b``'s target domain; ``prompt_width`` the padded prompt
    length, so a running sequence's generated tokens are ``input_ids[prompt_width:]``. A sequence that
    has left the trie (only possible after it finished) may emit only eos, which keeps it finished.
    """

    def allowed(batch_id: int, input_ids) -> list[int]:
        return tries[batch_id].allowed(input_ids[prompt_width:].tolist()) or [eos_token_id]

    return allowed
