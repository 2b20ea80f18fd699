"""Generation for grounding: beam search constrained to the title trie, and free generation.

Both take a left-padded batch of prompt token lists (the layout ``generate`` expects: every prompt ends
at the same column, so generated tokens start at ``prompt_width`` for all rows) and return, per prompt,
up to K outputs with their log-likelihoods (recomputed with the shared prompt cache).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from urllm.grounding.rerank import PromptState, encode_prompts, score_cached
from urllm.grounding.trie import TitleTrie, prefix_allowed_tokens_fn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Output:
    """One generated sequence: its tokens (eos and padding removed), log-likelihood, and trie items."""

    tokens: tuple[int, ...]
    score: float
    items: tuple[int, ...] = ()


def _split(tokens: list[int], eos: int) -> tuple[tuple[int, ...], bool]:
    """Generated tokens up to eos (excluded), and whether eos was reached."""
    return (tuple(tokens[: tokens.index(eos)]), True) if eos in tokens else (tuple(tokens), False)


def _generate(model, state: PromptState, n_return: int, pad_id: int, **kwargs) -> list[list[int]]:
    """The generated part of every returned sequence (rows ``b * n_return ... (b + 1) * n_return - 1``).

    ``generate`` starts from the prompt cache of ``state`` (expanded to one row per beam), so the prompt
    is not recomputed; only its last token runs again to give the first step's logits.
    """
    rows = torch.arange(state.ids.shape[0], device=state.ids.device).repeat_interleave(n_return)
    # no output_scores: beam search would keep a (rows, vocab) tensor per step; scores come from rescoring
    seqs = model.generate(
        input_ids=state.ids,
        attention_mask=state.mask,
        do_sample=False,
        pad_token_id=pad_id,
        **{state.cache_kw: state.cache(rows, model, drop_last=True)},
        **kwargs,
    )
    return seqs[:, state.ids.shape[1] :].tolist()


def _rescore(
    model, state: PromptState, outputs: list[list[tuple[tuple[int, ...], bool]]], eos_id, pad_id, **chunk
):
    """Sum log p(output tokens [+ eos when the output ended] | prompt) of every output, from the prompt cache."""
    titles = [[list(t) + ([eos_id] if done else []) for t, done in outs] for outs in outputs]
    if any(len(t) == 0 for ts in titles for t in ts):
        raise ValueError("an output without tokens")
    return [s.tolist() for s in score_cached(model, state, titles, pad_id, **chunk)]


@torch.inference_mode()
def constrained_beams(
    model,
    prompts: Sequence[Sequence[int]],
    tries: Sequence[TitleTrie],
    num_beams: int,
    eos_id: int,
    pad_id: int,
    length_penalty: float = 0.0,
    max_rows: int = 16,
    max_tokens: int = 2048,
) -> list[list[Output]]:
    """K beams per prompt, each a complete title of ``tries[b]`` (the prompt's target domain).

    Returns per prompt its beams in beam order, each with its items and its log-likelihood
    (title + eos); ``max_rows``/``max_tokens`` bound the rescoring passes (see ``score_cached``).
    """
    max_new = max(t.max_len for t in tries)  # the longest title: no beam is ever cut short
    k = min(num_beams, min(t.n_titles for t in tries))  # never ask for more beams than titles exist
    state = encode_prompts(model, prompts, pad_id)
    width = state.ids.shape[1]
    seqs = _generate(
        model,
        state,
        k,
        pad_id,
        num_beams=k,
        num_return_sequences=k,
        max_new_tokens=max_new,
        eos_token_id=eos_id,
        length_penalty=length_penalty,
        prefix_allowed_tokens_fn=prefix_allowed_tokens_fn(tries, width, eos_id),
    )
    outs = []
    for b, trie in enumerate(tries):
        beams = []
        for r in range(b * k, (b + 1) * k):
            tokens, done = _split(seqs[r], eos_id)
            if done and trie.items(tokens):
                beams.append((tokens, done))
            else:
                logger.warning("beam %d of prompt %d is not a complete title", r - b * k, b)
        outs.append(beams)
    scores = _rescore(model, state, outs, eos_id, pad_id, max_rows=max_rows, max_tokens=max_tokens)
    return [
        [Output(t, s, tries[b].items(t)) for (t, _), s in zip(outs[b], scores[b], strict=True)]
        for b in range(len(prompts))
    ]


@torch.inference_mode()
def free_outputs(
    model,
    prompts: Sequence[Sequence[int]],
    num_return: int,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    length_penalty: float = 0.0,
    max_rows: int = 16,
    max_tokens: int = 2048,
) -> list[list[Output]]:
    """Unconstrained outputs: greedy when ``num_return == 1``, else beam search returning K beams."""
    kwargs: dict = {"max_new_tokens": max_new_tokens, "eos_token_id": eos_id}
    if num_return > 1:
        kwargs.update(num_beams=num_return, num_return_sequences=num_return, length_penalty=length_penalty)
    state = encode_prompts(model, prompts, pad_id)
    seqs = _generate(model, state, num_return, pad_id, **kwargs)
    outs = [
        [_split(seqs[r], eos_id) for r in range(b * num_return, (b + 1) * num_return)]
        for b in range(len(prompts))
    ]
    scores = _rescore(model, state, outs, eos_id, pad_id, max_rows=max_rows, max_tokens=max_tokens)
    return [[Output(t, s) for (t, _), s in zip(outs[b], scores[b], strict=True)] for b in range(len(prompts))]
