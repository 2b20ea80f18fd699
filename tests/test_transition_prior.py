"""transition-prior (the untrained graph prior) and graph-encoder (the encoder alone) against oracles."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from urllm.baselines.transition_prior import TIE_BREAK, TransitionPrior
from urllm.data.schema import Catalogue, Record, TwoDomainData
from urllm.graph.config import GraphConfig
from urllm.graph.system import GraphEncoderSystem, GraphSystem
from urllm.recommender import SYSTEMS


def brute_force_prior(train: list[Record], item_domain: np.ndarray, history, domain: int) -> np.ndarray:
    """Score of every item of ``domain`` by the formula, from explicit loops over the raw records."""
    seqs = {}
    for r in train:  # the user's longest history, then their distinct targets
        h = max(seqs.get(r.user, ((), []))[0], r.history, key=len)
        t = seqs.get(r.user, ((), []))[1]
        seqs[r.user] = (h, t + [r.target] if r.target not in t else t)
    pairs = []
    for h, t in seqs.values():
        full = list(h) + t
        for d in (0, 1):
            sub = [i for i in full if item_domain[i] == d]
            pairs += list(zip(sub[:-1], sub[1:], strict=False))
    pop = np.zeros(len(item_domain))
    for h, t in seqs.values():
        for i in list(h) + t:
            pop[i] += 1
    recent = [i for i in reversed(history) if item_domain[i] == domain][:3]
    items = np.flatnonzero(item_domain == domain)
    out = np.zeros(len(items))
    for col, i in enumerate(items):
        s = 0.0
        for j, last in enumerate(recent):
            s += [1, 0.5, 0.25][j] * math.log(1 + sum(p == (last, i) for p in pairs))
            s += [0.5, 0.25, 0.125][j] * math.log(1 + sum(p == (i, last) for p in pairs))
        out[col] = s + TIE_BREAK * pop[i] / (pop.max() + 1)
    return out


def test_transition_prior_matches_the_formula(synthetic):
    system = TransitionPrior()
    system.fit(synthetic)
    train = synthetic.records("train")
    recs = synthetic.records("valid")[:12]
    for d in (0, 1):
        mine = [r for r in recs if r.domain == d] or recs[:3]
        got = system.score(mine, d)
        for row, r in enumerate(mine):
            want = brute_force_prior(train, synthetic.catalogue.item_domain, r.history, d)
            np.testing.assert_allclose(got[row], want, rtol=1e-9, atol=1e-12)


def test_transition_prior_by_hand_and_popularity_only_breaks_ties():
    # items 0-3 art, 4-5 office; art sequences: a 0 1 2, b 0 2, c 3 3 3 2 (c's office item 4 in between)
    cat = Catalogue(
        ("art", "office"), np.array([0, 0, 0, 0, 1, 1]), [f"t{i}" for i in range(6)], [""] * 6,
        [str(i) for i in range(6)],
    )  # fmt: skip
    train = [Record("a", (0, 1), 2, 0), Record("b", (0,), 2, 0), Record("c", (3, 3, 3, 4), 2, 0)]
    system = TransitionPrior()
    system.fit(TwoDomainData("hand", cat, {"train": train}))
    s = system.score([Record("q", (4, 0), 1, 0)], 0)[0]  # recent art items: [0]
    pop = np.array([2, 1, 3, 3]) / 4.0  # training occurrences / (max + 1)
    # successors of 0: 1 and 2 once each; no predecessor of 0
    np.testing.assert_allclose(s, [0, math.log(2), math.log(2), 0] + TIE_BREAK * pop, rtol=1e-12)
    assert np.argsort(-s).tolist() == [2, 1, 3, 0]  # equal prior: popularity decides; prior beats it
    # the 3 most recent items with weights 1, 1/2, 1/4 (successors) and 1/2, 1/4, 1/8 (predecessors)
    s = system.score([Record("q", (0, 3, 1), 2, 0)], 0)[0] - TIE_BREAK * pop  # recent: 1, 3, 0
    want = np.zeros(4)
    want[2] += 1 * math.log(2) + 0.5 * math.log(2) + 0.25 * math.log(2)  # 1->2, 3->2, 0->2
    want[0] += 0.5 * math.log(2)  # 0 -> 1: item 0 precedes the most recent item 1
    want[3] += 0.5 * math.log(3)  # 3 -> 3 twice: successor of 3 (j = 1)
    want[3] += 0.25 * math.log(3)  # ... and predecessor of 3 (j = 1)
    want[1] += 0.25 * math.log(2)  # 0 -> 1: successor of 0 (j = 2)
    np.testing.assert_allclose(s, want, atol=1e-12)


def test_systems_are_registered():
    assert SYSTEMS["transition-prior"].endswith(":TransitionPrior")
    assert SYSTEMS["graph-encoder"].endswith(":GraphEncoderSystem")


TINY = GraphConfig(
    hidden=16, semantic_dim=4, max_len=6, batch_size=16, epochs=1, progress=False, max_attr_frac=1.0,
    transition_prior=0.5, dropout=0.0, align_items=6, neural_scale=0.5,
)  # fmt: skip


def test_graph_encoder_is_the_encoder_alone_and_shares_the_graph_model(synthetic, tmp_path):
    enc = GraphEncoderSystem(TINY)
    enc.fit(synthetic, tmp_path / "systems" / "graph-encoder")
    assert (tmp_path / "systems" / "graph" / "model.pt").is_file()  # trained in the graph folder
    assert not (tmp_path / "systems" / "graph-encoder").exists()
    full = GraphSystem(TINY)
    full.fit(synthetic, tmp_path / "systems" / "graph")  # reuses it
    assert full.state.epoch == 1
    # oracle: the full scorer with prior and bias switched off and the encoder at weight 1
    with torch.no_grad():
        full.model.bias.zero_()
        full.model.prior.zero_()
        full.model.neural_weights.fill_(3.0)  # calibration must not matter for the encoder alone
    recs = synthetic.records("valid")[:20]
    graph = GraphSystem.load(tmp_path / "systems" / "graph")  # the same model, prior and bias kept
    for d in (0, 1):
        want = full.score(recs, d) / (3.0 * float(full.model.scale[d]))  # unscaled encoder
        np.testing.assert_allclose(enc.score(recs, d), want, rtol=1e-4, atol=1e-5)
        assert not np.allclose(enc.score(recs, d), graph.score(recs, d))  # prior + bias do count
    assert dataclasses.asdict(enc.cfg) == dataclasses.asdict(full.cfg)
