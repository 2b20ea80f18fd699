"""Prompt rendering (golden), token budgeting, the prompt datasets, and no leakage."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from urllm.config import load_config
from urllm.configuration import ConfigError
from urllm.data.schema import Catalogue, Record, TwoDomainData
from urllm.data.synthetic import make_synthetic
from urllm.prompts.builder import PromptBuilder, count_tokens
from urllm.prompts.config import PromptConfig
from urllm.systems import prompt_datasets


class WhitespaceTokenizer:
    """Stand-in tokenizer: one token per whitespace-separated word, no chat template."""

    chat_template = None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[str]:
        return text.split()


class ChatTokenizer(WhitespaceTokenizer):
    """Whitespace tokens plus a chat template in the style of ChatML."""

    chat_template = "chatml-like"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        text = "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in messages)
        return text + ("<|assistant|>\n" if add_generation_prompt else "")


class CharTokenizer(WhitespaceTokenizer):
    """A tokenizer whose counts are not the sum of its lines' counts (3 characters per token)."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[str]:
        return [text[i : i + 3] for i in range(0, len(text), 3)]


def tiny_catalogue() -> Catalogue:
    titles = ["brush", "oil paint", "canvas", "pen", "stapler", "paper clips"]
    return Catalogue(
        domains=("art", "office"),
        item_domain=np.array([0, 0, 0, 1, 1, 1]),
        titles=titles,
        texts=[""] * 6,
        source_ids=[str(i) for i in range(6)],
    )


GOLDEN = """You are a recommender system. You answer with the exact title of one product.

### Instruction:
Recommend the next arts and crafts item for this user, based on the items bought by similar users and on \
the user's own purchase history.

Users with similar tastes bought (arts and crafts items first):
Similar user 1:
- [art] canvas
- [office] stapler
- [office] paper clips

This user's purchase history (most recent last):
- [art] brush
- [office] pen
- [art] oil paint

Recommend a new arts and crafts item for this user. Answer with its title only.

### Response:
"""


def test_golden_prompt():
    builder = PromptBuilder(PromptConfig(), tiny_catalogue(), WhitespaceTokenizer())
    record = Record("q", (0, 3, 1), target=2, domain=0)
    # n1: brush is known (skipped), canvas is its art item, then its office items; n2 has only known items
    built = builder.build(record, [("n1", (0, 4, 2, 5)), ("n2", (1, 3))])
    assert built.text == GOLDEN
    assert built.neighbours == ["n1"]
    assert built.n_tokens == len(GOLDEN.split()) and built.n_dropped == 0
    assert built.items == [2, 4, 5, 0, 3, 1]


def test_chat_template_wraps_the_prompt_and_ends_with_the_assistant_opening():
    builder = PromptBuilder(PromptConfig(), tiny_catalogue(), ChatTokenizer())
    text = builder.build(Record("q", (0, 3), 2, 1), []).text
    assert text.startswith("<|system|>\nYou are a recommender system.")
    assert "<|user|>\nRecommend the next office products item" in text
    assert text.endswith("Answer with its title only.<|end|>\n<|assistant|>\n")
    plain = PromptBuilder(PromptConfig(), tiny_catalogue(), ChatTokenizer(), use_chat_template=False)
    assert plain.build(Record("q", (0, 3), 2, 1), []).text.endswith("### Response:\n")


def item_lines(text: str) -> list[str]:
    return [line.split("] ", 1)[1] for line in text.split("\n") if line.startswith("- [")]


@pytest.mark.parametrize("tokenizer", [WhitespaceTokenizer(), ChatTokenizer(), CharTokenizer()], ids=type)
def test_budget_drops_whole_items_in_order(tokenizer):
    data = make_synthetic(n_users=60, seed=3)
    cat = data.catalogue
    rng = np.random.default_rng(0)
    record = Record("q", tuple(rng.integers(0, 80, size=25).tolist()), 5, 0)
    neighbours = [(f"n{j}", tuple(rng.integers(0, 80, size=30).tolist())) for j in range(3)]
    full = PromptBuilder(PromptConfig(max_tokens=100_000, n_neighbours=3), cat, tokenizer).build(
        record, neighbours
    )
    previous_dropped = None
    for budget in range(full.n_tokens + 5, 0, -7):
        cfg = PromptConfig(max_tokens=budget, n_neighbours=3)
        try:
            builder = PromptBuilder(cfg, cat, tokenizer)
        except ConfigError:
            break  # smaller than the prompt without items: a clear error, checked below
        built = builder.build(record, neighbours)
        assert built.n_tokens == count_tokens(tokenizer, built.text) <= budget
        assert all(t in cat.titles for t in item_lines(built.text))  # never part of a title
        kept_hist = built.items[built.n_neighbour_items :]
        hist = list(record.history)[-cfg.max_history_items :]
        assert kept_hist == hist[len(hist) - len(kept_hist) :]  # the user's oldest items go first
        if len(kept_hist) < cfg.min_history_items:
            assert built.n_neighbour_items == 0  # neighbours' items go before the user's recent items
        if built.n_neighbour_items:
            assert len(kept_hist) >= cfg.min_history_items  # ... but after the user's older ones
        if previous_dropped is not None:
            assert built.n_dropped >= previous_dropped  # a smaller budget never keeps more
        previous_dropped = built.n_dropped
    else:
        pytest.fail("the budget loop never reached the prompt-without-items size")
    with pytest.raises(ConfigError, match="prompts.max_tokens"):
        PromptBuilder(PromptConfig(max_tokens=16), cat, tokenizer)


def test_budget_is_minimal_and_drops_other_domain_neighbour_items_first():
    cat = tiny_catalogue()
    tok = WhitespaceTokenizer()
    record = Record("q", (3,), 2, 0)
    neighbours = [("n1", (0, 4, 1, 5)), ("n2", (1, 4))]  # n1: art brush, oil paint; office stapler, clips
    full = PromptBuilder(PromptConfig(max_tokens=1000), cat, tok).build(record, neighbours)
    assert full.items == [0, 1, 4, 5, 1, 4, 3]
    # other-domain items go first, the oldest first (n1's stapler), then at equal age the less similar
    # neighbour's (n2's stapler before n1's clips); each "- [office] stapler" line is 3 tokens
    one = PromptBuilder(PromptConfig(max_tokens=full.n_tokens - 1), cat, tok).build(record, neighbours)
    assert one.n_dropped == 1 and one.items == [0, 1, 5, 1, 4, 3]
    two = PromptBuilder(PromptConfig(max_tokens=full.n_tokens - 4), cat, tok).build(record, neighbours)
    assert two.n_dropped == 2 and two.items == [0, 1, 5, 1, 3]


def test_budget_cuts_the_older_history_before_neighbour_items():
    cat = tiny_catalogue()
    tok = WhitespaceTokenizer()
    record = Record("q", (3, 5, 4), 2, 0)  # office: stapler, clips, ... (oldest first)
    neighbours = [("n1", (0, 1))]
    cfg = {"n_neighbours": 1, "min_history_items": 1, "skip_known_items": False}
    full = PromptBuilder(PromptConfig(max_tokens=1000, **cfg), cat, tok).build(record, neighbours)
    assert full.items == [0, 1, 3, 5, 4]
    one = PromptBuilder(PromptConfig(max_tokens=full.n_tokens - 1, **cfg), cat, tok).build(record, neighbours)
    assert one.items == [0, 1, 5, 4]  # the user's oldest item goes first
    two = PromptBuilder(PromptConfig(max_tokens=one.n_tokens - 1, **cfg), cat, tok).build(record, neighbours)
    assert two.items == [0, 1, 4]  # down to min_history_items = 1, neighbours' items all kept
    three = PromptBuilder(PromptConfig(max_tokens=two.n_tokens - 1, **cfg), cat, tok).build(
        record, neighbours
    )
    assert three.items == [1, 4]  # then the neighbours' items (the oldest first)


def test_prompt_config_rejects_bad_templates():
    with pytest.raises(ConfigError, match="item_line"):
        load_config(None, ["prompts.item_line=- {name}"])
    with pytest.raises(ConfigError, match="n_neighbours"):
        load_config(None, ["prompts.n_neighbours=-1"])


# --------------------------------------------------------------------------- datasets and leakage


def unique_targets(data: TwoDomainData) -> TwoDomainData:
    """The same data, but every record's target is a fresh item that no other sequence contains."""
    cat = data.catalogue
    old = {d: list(cat.domain_range(d)) for d in (0, 1)}
    recs = [(split, r) for split, rs in data.splits.items() for r in rs]
    new_titles = {d: [f"<<T:{s}:{r.user}:{r.domain}>>" for s, r in recs if r.domain == d] for d in (0, 1)}
    mapping, titles, item_domain = {}, [], []
    for d in (0, 1):
        for i in old[d]:
            mapping[i] = len(titles)
            titles.append(cat.titles[i])
            item_domain.append(d)
        first_new = len(titles)
        titles += new_titles[d]
        item_domain += [d] * len(new_titles[d])
        new_titles[d] = iter(range(first_new, len(titles)))
    splits: dict[str, list[Record]] = {s: [] for s in data.splits}
    for split, r in recs:
        hist = tuple(mapping[i] for i in r.history)
        splits[split].append(Record(r.user, hist, next(new_titles[r.domain]), r.domain))
    catalogue = Catalogue(cat.domains, np.array(item_domain), titles, [""] * len(titles), [""] * len(titles))
    out = TwoDomainData("unique", catalogue, splits)
    out.validate()
    return out


@pytest.fixture(scope="module")
def prompt_run(tmp_path_factory):
    data = unique_targets(make_synthetic(n_users=120, seed=1))
    out = tmp_path_factory.mktemp("run")
    cfg = load_config(
        None,
        [
            f"run_dir={out}",
            "retrieval.encoder=svd",
            "retrieval.svd.dim=8",
            "retrieval.k=4",
            "prompts.candidates_system=svd",
            "prompts.n_candidates=5",
            "prompts.n_neighbours=2",
            "prompts.max_tokens=220",
        ],
    )
    stats = prompt_datasets(cfg, data, out / "prompts", tokenizer=WhitespaceTokenizer())
    return cfg, data, out / "prompts", stats


def read_split(folder: Path, split: str) -> dict[str, list]:
    from datasets import Dataset

    return Dataset.from_parquet(str(folder / f"{split}.parquet")).to_dict()


def test_prompt_datasets_follow_the_contract(prompt_run):
    cfg, data, folder, stats = prompt_run
    cat = data.catalogue
    for split in ("train", "valid", "test"):
        t = read_split(folder, split)
        recs = data.records(split)
        assert len(t["prompt"]) == len(recs)
        assert t["user"] == [r.user for r in recs] and t["target"] == [r.target for r in recs]
        assert t["completion"] == [cat.titles[r.target] for r in recs]
        assert t["target_domain"] == [cat.domains[r.domain] for r in recs]
        assert all(n == len(p.split()) <= 220 for n, p in zip(t["n_prompt_tokens"], t["prompt"], strict=True))
        for r, cands in zip(recs, t["candidates"], strict=True):
            assert len(cands) == 5 and all(cat.item_domain[c] == r.domain for c in cands)
        assert stats[split]["prompt_tokens"]["within_budget"] == 1.0
    saved = json.loads((folder / "stats.json").read_text())
    assert saved["valid"]["prompt_tokens"]["max"] <= 220


def test_no_leakage(prompt_run):
    _, data, folder, _ = prompt_run
    cat = data.catalogue
    train_users = {r.user for r in data.records("train")}
    held_out = [cat.titles[r.target] for s in ("valid", "test") for r in data.records(s)]
    own_targets: dict[str, set[str]] = {}
    for r in data.records("train"):
        own_targets.setdefault(r.user, set()).add(cat.titles[r.target])
    for split in ("train", "valid", "test"):
        t = read_split(folder, split)
        everything = "\n".join(t["prompt"])
        # a valid/test target never appears in any prompt
        assert not any(title in everything for title in held_out)
        for user, prompt, nbrs in zip(t["user"], t["prompt"], t["neighbours"], strict=True):
            # neighbours are training users, never the user itself
            assert set(nbrs) <= train_users and user not in nbrs
            # a training user's own targets never appear in its own prompts
            assert not any(title in prompt for title in own_targets.get(user, ()))
    # neighbours do bring their own (training) targets, so retrieval carries signal into prompts
    train_prompts = "\n".join(read_split(folder, "train")["prompt"])
    assert "<<T:train:" in train_prompts


def test_finished_splits_are_skipped(prompt_run):
    cfg, data, folder, _ = prompt_run
    before = {s: (folder / f"{s}.parquet").stat().st_mtime_ns for s in ("train", "valid", "test")}
    prompt_datasets(cfg, data, folder, tokenizer=WhitespaceTokenizer())
    assert before == {s: (folder / f"{s}.parquet").stat().st_mtime_ns for s in ("train", "valid", "test")}


def test_no_retrieval_prompts_have_no_neighbours(tmp_path):
    data = make_synthetic(n_users=40, seed=2)
    cfg = load_config(None, [f"run_dir={tmp_path}", "prompts.n_neighbours=0", "prompts.n_candidates=0"])
    prompt_datasets(cfg, data, tmp_path / "prompts", tokenizer=WhitespaceTokenizer())
    t = read_split(tmp_path / "prompts", "valid")
    assert all(n == [] for n in t["neighbours"]) and all(c == [] for c in t["candidates"])
    assert not any("Similar user" in p for p in t["prompt"])


# --------------------------------------------------------------------------- the real tokenizer


SMOLLM2_DIR = (
    Path(os.environ.get("URLLM_CACHE", "~/.cache/urllm")).expanduser() / "SmolLM2-135M-Instruct.Q4_1"
)


@pytest.mark.slow
@pytest.mark.skipif(not (SMOLLM2_DIR / "tokenizer.json").is_file(), reason="SmolLM2 not converted yet")
def test_golden_prompt_with_smollm2_chat_template():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(SMOLLM2_DIR)
    cfg = dataclasses.replace(PromptConfig(), max_tokens=400)
    built = PromptBuilder(cfg, tiny_catalogue(), tok).build(
        Record("q", (0, 3, 1), 2, 0), [("n1", (0, 4, 2, 5))]
    )
    body = GOLDEN.split("### Instruction:\n")[1].split("\n\n### Response:")[0]
    system = "You are a recommender system. You answer with the exact title of one product."
    expected = (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{body}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert built.text == expected
    assert built.n_tokens == len(tok(expected, add_special_tokens=False)["input_ids"]) <= 400
