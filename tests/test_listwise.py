"""Listwise ranking (mode ``rank``), the leave-user-out prior, calibrated fusion and live scoring, on the
synthetic data with a tiny random Llama (no download)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from urllm.baselines.transition_prior import TransitionPrior
from urllm.config import load_config
from urllm.data.schema import DataError, Record, TwoDomainData
from urllm.eval.evaluate import evaluate
from urllm.grounding.calibrate import HeldOut, fit_fusion, fuse_calibrated, reciprocal_rank
from urllm.grounding.listwise import LABEL_ALPHABET, label_logprobs, rank_labels
from urllm.infer.batch import run_inference as run_with_setup
from urllm.infer.jobs import record_key
from urllm.infer.variants import Variant
from urllm.llm.config import LLMConfig
from urllm.llm.tiny import tiny_llama
from urllm.prompts.rank import RankPrompts, holdout_users, write_rank_datasets
from urllm.systems import infer_setup, make_system


def run_inference(cfg, *args, **kwargs):
    """:func:`urllm.infer.batch.run_inference` with the setup the root config makes."""
    return run_with_setup(infer_setup(cfg), *args, **kwargs)


@pytest.fixture(scope="module")
def tok():
    from urllm.llm.model import load_tokenizer

    return load_tokenizer(LLMConfig())


@pytest.fixture(scope="module")
def llm(tok):
    return tiny_llama(seed=1), tok, None


@pytest.fixture()
def small(synthetic) -> TwoDomainData:
    valid = []
    for d in (0, 1):
        valid += [r for r in synthetic.records("valid") if r.domain == d][:3]
    return TwoDomainData(
        synthetic.name, synthetic.catalogue, {"train": synthetic.records("train"), "valid": valid}
    )


def make_cfg(tmp_path, *extra):
    return load_config(
        None,
        [
            f"run_dir={tmp_path}",
            "grounding.backbone=prior",
            "grounding.mode=rank",
            "grounding.top_n=5",
            "grounding.fusion_holdout_users=4",
            "prompts.n_neighbours=0",
            "prompts.max_tokens=400",
            "prompts.title_max_words=4",
            "infer.batch_size=4",
            *extra,
        ],
    )


def test_labels_are_single_distinct_tokens(tok):
    labels, ids = rank_labels(tok, len(LABEL_ALPHABET))
    assert len(set(ids)) == len(ids) == len(LABEL_ALPHABET)
    for lab, i in zip(labels, ids, strict=True):
        assert tok.encode(lab, add_special_tokens=False) == [i]
        # in the list the label is the line's first token, the same token the model answers with
        assert tok.encode(f"x\n{lab}. some title", add_special_tokens=False)[2] == i
    with pytest.raises(ValueError, match="one-token labels"):
        rank_labels(tok, len(LABEL_ALPHABET) + 1)


def test_label_logprobs_match_an_unbatched_forward(tok):
    model = tiny_llama(seed=3)
    prompts = [tok.encode(t, add_special_tokens=False) for t in ("a b c d e f", "hello", "x y")]
    labels = [rank_labels(tok, 4)[1]] * 3
    got = label_logprobs(model, prompts, labels, pad_id=2, max_rows=2)
    for p, lab, g in zip(prompts, labels, got, strict=True):
        with torch.no_grad():
            ref = model(input_ids=torch.tensor([p])).logits[0, -1].log_softmax(-1)[lab].double().numpy()
        np.testing.assert_allclose(g, ref, atol=1e-5)


def test_prior_leave_user_out_is_exact(synthetic):
    """Out-of-fold scores of a training user = in-sample scores of a prior fitted without that user."""
    prior = TransitionPrior()
    prior.fit(synthetic)
    user = synthetic.records("train")[0].user
    recs = [r for r in synthetic.records("train") if r.user == user]
    without = TwoDomainData(
        synthetic.name,
        synthetic.catalogue,
        {"train": [r for r in synthetic.records("train") if r.user != user], "valid": []},
    )
    ref = TransitionPrior()
    ref.fit(without)
    for r in recs:
        np.testing.assert_allclose(
            prior.score_out_of_fold([r], r.domain), ref.score([r], r.domain), rtol=0, atol=1e-6
        )
        assert not np.allclose(prior.score([r], r.domain), ref.score([r], r.domain))


def test_calibrated_fusion_is_scale_free_and_backbone_at_zero():
    rng = np.random.default_rng(0)
    base = rng.normal(size=50)
    top = np.argsort(-base)[:5]
    groups, llm = [(int(c) + 100,) for c in top], rng.normal(size=5).tolist()
    at0 = fuse_calibrated(groups, llm, base, 100, 0.0, 1.0)
    assert np.array_equal(np.argsort(-at0, kind="stable"), np.argsort(-base, kind="stable"))
    a = fuse_calibrated(groups, llm, base, 100, 0.5, 2.0)
    b = fuse_calibrated(groups, llm, 10 * base, 100, 0.5, 20.0)  # scores x 10, temperature x 10
    assert np.array_equal(np.argsort(-a, kind="stable"), np.argsort(-b, kind="stable"))
    # w = 1: candidates by LLM first, every other item still in backbone order below them
    one = fuse_calibrated(groups, llm, base, 100, 1.0, 1.0)
    order = np.argsort(-one, kind="stable")
    assert [int(c) for c in order[:5]] == [int(top[i]) for i in np.argsort(-np.array(llm), kind="stable")]
    rest = [c for c in np.argsort(-base, kind="stable") if c not in set(top.tolist())]
    assert order[5:].tolist() == rest


def held_out_lists(rng, n: int, target_of, llm_of) -> list[HeldOut]:
    """``n`` held-out records over 40 items: the backbone's top 5 as LLM groups, target and LLM scores
    from ``target_of(i, top)`` and ``llm_of(top, target)``."""
    recs = []
    for i in range(n):
        base = rng.normal(size=40)
        top = np.argsort(-base)[:5]
        target = target_of(i, top)
        recs.append(HeldOut([(int(c),) for c in top], list(llm_of(top, target)), base, 0, target))
    return recs


def test_fit_fusion_never_loses_on_the_held_out_records():
    rng = np.random.default_rng(1)
    # an uninformative LLM
    recs = held_out_lists(rng, 30, lambda i, top: int(rng.choice(top)), lambda top, t: rng.normal(size=5))
    fit = fit_fusion(recs, [0.0, 0.5, 1.0])
    assert fit.holdout_gain_mrr >= 0 and "0" in fit.mrr_by_weight
    assert fit.holdout_mrr_backbone == pytest.approx(
        np.mean([reciprocal_rank(r.backbone, r.target) for r in recs])
    )
    # an oracle LLM gets weight > 0, also when its gain must be significant
    for r in recs:
        r.llm_scores = [10.0 if g[0] == r.target else 0.0 for g in r.groups]
    assert fit_fusion(recs, [0.0, 0.5, 1.0]).weight > 0
    sure = fit_fusion(recs, [0.0, 0.5, 1.0], confidence=0.95)
    assert sure.weight > 0 and sure.best_gain_lo > 0


def test_fit_fusion_keeps_the_backbone_when_the_held_out_gain_may_be_chance():
    rng = np.random.default_rng(3)
    recs = held_out_lists(
        rng,
        40,
        lambda i, top: int(top[1]) if i == 0 else int(rng.integers(0, 40)),  # one list where the LLM can help
        lambda top, target: [10.0 if c == target else 0.0 for c in top],  # an oracle on the list
    )
    loose = fit_fusion(recs, [0.0, 0.5, 1.0])
    assert loose.weight > 0 and loose.holdout_gain_mrr > 0  # one record's gain picks w > 0
    strict = fit_fusion(recs, [0.0, 0.5, 1.0], confidence=0.95)
    assert strict.weight == 0.0 and strict.best_weight == loose.weight and strict.best_gain_lo <= 0
    assert strict.holdout_gain_mrr == 0.0 and strict.holdout_mrr_fused == strict.holdout_mrr_backbone


def test_holdout_users_come_from_the_backbones_unseen_users(synthetic):
    train = synthetic.records("train")
    users = sorted({r.user for r in train})
    unseen = set(users[::3])

    class Backbone:  # a graph-like backbone that names the users it never trained on
        def unseen_users(self):
            return unseen

    held = holdout_users(train, 4, 0, Backbone())
    assert len(held) == 4 and held <= unseen
    assert holdout_users(train, 4, 0, Backbone()) == held  # seeded
    assert len(holdout_users(train, 4, 0, object())) == 4  # a backbone that does not say: any user
    with pytest.raises(DataError, match="fusion_holdout_users=999.*only"):
        holdout_users(train, 999, 0, Backbone())


def test_rank_datasets_out_of_fold_shuffled_and_labelled(tmp_path, synthetic, tok):
    cfg = make_cfg(tmp_path)
    prior = make_system("prior", cfg)
    prior.fit(synthetic, tmp_path)
    stats = write_rank_datasets(
        cfg.prompts, cfg.grounding, cfg.seed, synthetic, tmp_path / "rank", prior, tok, tmp_path / "prompts"
    )
    assert stats["candidates_out_of_fold"] and stats["train_examples"] > 0
    import pyarrow.parquet as pq

    t = pq.read_table(tmp_path / "rank" / "train.parquet").to_pydict()
    held = holdout_users(synthetic.records("train"), 4, cfg.seed)
    assert not held & set(t["user"])  # held-out users are never trained on
    labels, _ = rank_labels(tok, 5)
    positions = []
    for cands, target, comp, prompt in zip(
        t["candidates"], t["target"], t["completion"], t["prompt"], strict=True
    ):
        assert comp == labels[cands.index(target)]  # completion = the target's label
        assert f"\n{comp}. " in prompt
        positions.append(cands.index(target))
    assert len(set(positions)) > 1  # shuffled: the target is not always first
    assert sum(stats["train_lists"]["at_position"]) == pytest.approx(stats["train_lists"]["hr@5"], abs=1e-3)


def test_rank_prompt_keeps_candidates_within_budget(synthetic, tok, tmp_path):
    cfg = make_cfg(tmp_path, "prompts.max_tokens=250")
    maker = RankPrompts(cfg.prompts, synthetic, tok, 5, cfg.llm.use_chat_template)
    r = synthetic.records("valid")[0]
    lo = synthetic.catalogue.domain_range(r.domain).start
    built = maker.build(r, [], [lo, lo + 1, lo + 2])
    assert built.n_tokens <= 250 and built.text.count("\nA. ") == 1 and "\nC. " in built.text
    assert "\nD. " not in built.text


def test_missing_prompts_parquet_is_an_error_naming_the_command(tmp_path, small, llm):
    cfg = make_cfg(tmp_path, "prompts.n_neighbours=3")
    from urllm.data.schema import DataError

    with pytest.raises(DataError, match="urllm prompts build"):
        run_inference(cfg, small, "valid", Variant("rank"), llm=llm)


def test_rank_end_to_end_zero_ood_fusion_in_json_and_live(tmp_path, small, llm):
    cfg = make_cfg(tmp_path)
    system = make_system("urllm", cfg)
    system.llm = llm
    system.fit(small, tmp_path)
    result = evaluate(system, small, "valid", cfg.eval, "urllm")
    for name in small.catalogue.domains:
        m = result["per_domain"][name]
        assert m["ood_rate"] == 0.0  # every scored item is a candidate of the target domain
        assert 0.0 in [float(w) for w in m["fusion_mrr_by_weight"]]
        assert m["fusion_holdout_gain_mrr"] >= 0.0 and m["fusion_n"] > 0
    json.dumps(result)
    # with weight 0 the ranking is the backbone's
    rows = [json.loads(x) for x in (tmp_path / "infer" / "valid" / "rank.jsonl").read_text().splitlines()]
    assert all(len(r["label_logprobs"]) == 5 for r in rows)
    # live: a record that is in no JSONL and no split, one batched call, and explain()
    r0 = small.records("valid")[0]
    new = Record("new-user", r0.history, r0.target, r0.domain)
    scores = system.score([new, Record("new-2", r0.history[:-1], r0.target, r0.domain)], r0.domain)
    assert scores.shape == (2, len(small.catalogue.domain_range(r0.domain)))
    assert np.isfinite(scores).all()
    ex = system.explain(new, new.domain)
    json.dumps(ex)
    assert len(ex["candidates"]) == 5 and ex["grounding"]["mode"] == "rank"
    assert {"id", "title", "backbone", "llm", "fused"} <= set(ex["candidates"][0])
    assert ex["history"] == list(r0.history)
    assert [c["fused"] for c in ex["candidates"]] == sorted(
        (c["fused"] for c in ex["candidates"]), reverse=True
    )
    dom = small.catalogue.domain_range(new.domain)
    assert all(c["id"] in dom for c in ex["candidates"])


def test_eval_shortcut_gives_the_same_metrics(tmp_path, small, llm):
    """Lists without the target skip the forward pass and still score exactly as with it."""
    results, systems = {}, {}
    for name, flag in (("full", "false"), ("short", "true")):
        cfg = make_cfg(
            tmp_path / name,
            f"infer.eval_target_shortcut={flag}",
            "grounding.top_n=2",
            "grounding.backbone=popularity",
        )
        system = make_system("urllm", cfg)
        system.llm = llm
        system.fit(small, tmp_path / name)
        results[name] = evaluate(system, small, "valid", cfg.eval, "urllm")
        systems[name] = system
        text = (tmp_path / name / "infer" / "valid" / "rank.jsonl").read_text()
        rows = [json.loads(x) for x in text.splitlines()]
        outside = [r for r in rows if r["target"] not in r["candidates"]]
        assert outside  # the case the shortcut is for
        assert all(r.get("llm_skipped", False) == (flag == "true") for r in outside)
        assert not any(r.get("llm_skipped") for r in rows if r["target"] in r["candidates"])
    for d in small.catalogue.domains:
        for k in ("MRR", "NDCG@10", "HR@10"):
            assert results["short"]["per_domain"][d][k] == pytest.approx(results["full"]["per_domain"][d][k])
    # outside that evaluation (serving) a shortcut row is never used: the record runs live, as without it
    systems["short"].setup.infer.eval_target_shortcut = False
    skipped = {r["key"] for r in rows if r.get("llm_skipped")}
    rec = next(r for r in small.records("valid") if record_key(r, small.catalogue) in skipped)
    short, seen = systems["short"], []
    real_live = short.live

    def spy():
        lv = real_live()
        real_rows = lv.rows
        lv.rows = lambda recs: seen.extend(recs) or real_rows(recs)
        return lv

    short.live = spy
    np.testing.assert_allclose(
        short.score([rec], rec.domain), systems["full"].score([rec], rec.domain), atol=1e-5
    )
    assert seen == [rec]


def test_prior_counts_every_sequence_of_a_user_whose_windows_the_cap_left_apart(synthetic):
    """Two records of one user whose histories do not overlap give that user two sequences."""
    from urllm.baselines.transition_prior import TransitionPrior

    cat = synthetic.catalogue
    art, office = list(cat.domain_range(0)), list(cat.domain_range(1))
    recs = [
        Record("u", (art[0], art[1], office[0]), art[2], 0),
        Record("u", (art[5], art[6], office[3]), office[4], 1),  # a later window, apart from the first
        Record("v", (art[1], art[2], office[1]), office[2], 1),
    ]
    prior = TransitionPrior()
    prior.fit(TwoDomainData("t", cat, {"train": recs}))
    assert prior.own_pairs["u"][(art[0], art[1])] == 1 and prior.own_pairs["u"][(art[5], art[6])] == 1
    assert prior.own_items["u"][office[4]] == 1 and prior.own_items["u"][art[2]] == 1
    assert prior.succ[0][art[1]][art[2]] == 2  # u's first window and v
