"""SASRec baseline on the synthetic two-domain fixture: shapes, learning, gradients, resume."""

import dataclasses

import numpy as np
import pytest
import torch

from urllm.baselines.checkpoint import TrainState
from urllm.baselines.config import SASRecConfig
from urllm.baselines.popularity import Popularity
from urllm.baselines.sasrec import (
    CHECKPOINT,
    SASRecModel,
    SASRecSystem,
    next_in_domain,
    pad_left,
    training_windows,
)
from urllm.config import Config
from urllm.configuration import ConfigError, from_dict
from urllm.data.schema import Record
from urllm.eval.config import EvalConfig
from urllm.eval.evaluate import evaluate

SMALL = dict(hidden=32, layers=1, max_len=16, batch_size=32, lr=3e-3, device="cpu")


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_cfg(**sasrec) -> Config:
    return Config(seed=0, sasrec=SASRecConfig(**{**SMALL, **sasrec}))


def make_sasrec(**sasrec) -> SASRecSystem:
    cfg = make_cfg(**sasrec)
    return SASRecSystem(cfg.sasrec, cfg.seed, cfg.eval)


def unfitted(synthetic, **sasrec) -> SASRecSystem:
    """A system with an initialised model, as fit() leaves it before the first epoch."""
    system = make_sasrec(**sasrec)
    cat = synthetic.catalogue
    system.ranges = [cat.domain_range(d) for d in (0, 1)]
    system.item_domain = cat.item_domain
    torch.manual_seed(0)
    system.model = SASRecModel(cat.n_items, system.cfg)
    return system


def batch(synthetic, system, n=32):
    inputs, labels = training_windows(synthetic.records("train"), system.cfg.max_len)
    return (
        torch.from_numpy(inputs[:n]),
        torch.from_numpy(labels[:n]),
        torch.from_numpy(synthetic.catalogue.item_domain),
    )


def test_pad_left_keeps_the_most_recent_items_right_aligned():
    out = pad_left([(4, 5, 6), (7,), ()], 2)
    assert out.tolist() == [[6, 7], [0, 8], [0, 0]]


def test_training_windows_shift_by_one(synthetic):
    inputs, labels = training_windows(synthetic.records("train"), max_len=8)
    assert inputs.shape == labels.shape == (140, 8)
    # every real input position is followed by its label; the label of position t is the input at t+1
    assert np.array_equal(inputs[:, 1:] - 1, labels[:, :-1])
    assert ((labels >= 0) == (inputs > 0)).all()


def test_next_in_domain_matches_a_brute_force_scan(synthetic):
    item_domain = torch.from_numpy(synthetic.catalogue.item_domain)
    _, labels = training_windows(synthetic.records("train")[:40], max_len=16)
    for d in (0, 1):
        got = next_in_domain(torch.from_numpy(labels), item_domain, d).numpy()
        for b, row in enumerate(labels):
            for t, y in enumerate(row):
                later = [int(x) for x in row[t:] if x >= 0 and item_domain[x] == d]
                assert got[b, t] == (-1 if y < 0 or not later else later[0])


@pytest.mark.parametrize("tie_weights", [False, True])
def test_output_shapes(synthetic, tie_weights):
    system = unfitted(synthetic, tie_weights=tie_weights)
    recs = synthetic.records("valid")[:5]
    for d in (0, 1):
        scores = system.score(recs, d)
        assert scores.shape == (5, synthetic.catalogue.domain_size(d))
        assert np.isfinite(scores).all()
    emb = system.user_embeddings(recs, 1)
    assert emb.shape == (5, 32) and emb.dtype == np.float32
    # the embedding is the state that scores the items: score = embedding @ output embeddings + item bias
    n0 = synthetic.catalogue.domain_size(0)
    with torch.no_grad():
        system.model.bias.uniform_()
    weight = system.model.items.weight[1 : n0 + 1] if tie_weights else system.model.out[:n0]
    expected = emb @ weight.detach().numpy().T + system.model.bias[:n0].detach().numpy()
    np.testing.assert_allclose(expected, system.score(recs, 0), rtol=1e-4, atol=1e-4)


def test_history_longer_than_max_len_is_truncated_not_an_error(synthetic):
    system = unfitted(synthetic, max_len=4)
    rec = Record(user="x", history=tuple(range(10)), target=50, domain=1)
    same_tail = Record(user="y", history=(0, 1, *range(6, 10)), target=50, domain=1)
    np.testing.assert_allclose(system.score([rec], 1), system.score([same_tail], 1), rtol=1e-5)


@pytest.mark.parametrize("loss", ["domain", "catalogue", "each_domain"])
def test_a_few_steps_lower_the_loss(synthetic, loss):
    system = unfitted(synthetic, loss=loss, dropout=0.0)
    inputs, labels, item_domain = batch(synthetic, system)
    opt = torch.optim.Adam(system.model.parameters(), lr=1e-2)
    system.model.train()
    losses = []
    for _ in range(15):
        value = system.loss(inputs, labels, item_domain)
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(value.item())
    assert losses[-1] < 0.8 * losses[0]


def test_domain_loss_matches_a_per_position_oracle(synthetic):
    system = unfitted(synthetic, dropout=0.0, loss="domain", tie_weights=False)
    inputs, labels, item_domain = batch(synthetic, system, n=3)
    system.model.eval()
    states = system.model(inputs)
    expected = []
    for b, t in zip(*np.nonzero(labels.numpy() >= 0), strict=True):
        y = int(labels[b, t])
        items = system.ranges[int(item_domain[y])]
        logits = states[b, t] @ system.model.out[items.start : items.stop].T
        logits = logits + system.model.bias[items.start : items.stop]
        expected.append(-torch.log_softmax(logits, 0)[y - items.start])
    torch.testing.assert_close(system.loss(inputs, labels, item_domain), torch.stack(expected).mean())


@pytest.mark.parametrize("tie_weights", [False, True])
def test_every_parameter_receives_gradient(synthetic, tie_weights):
    system = unfitted(
        synthetic, layers=2, max_len=14, tie_weights=tie_weights
    )  # 14 = the synthetic sequences: no idle position
    inputs, labels, item_domain = batch(synthetic, system)
    system.model.train()
    system.loss(inputs, labels, item_domain).backward()
    for name, p in system.model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert system.model.items.weight.grad[0].abs().sum() == 0  # padding stays a constant zero


def test_trained_model_beats_popularity(synthetic, tmp_path):
    system = make_sasrec(epochs=12, patience=12)
    system.fit(synthetic, tmp_path)
    pop = Popularity()
    pop.fit(synthetic)
    ev = EvalConfig()
    ours = evaluate(system, synthetic, "valid", ev, "sasrec")["per_domain"]
    base = evaluate(pop, synthetic, "valid", ev, "popularity")["per_domain"]
    for name in synthetic.catalogue.domains:
        assert ours[name]["MRR"] > base[name]["MRR"] + 0.03, (name, ours[name], base[name])
    assert len(system.history) == 12 and all("loss" in h and "art" in h for h in system.history)


def test_resume_and_reuse_of_the_checkpoint(synthetic, tmp_path, monkeypatch):
    straight = make_sasrec(epochs=3, patience=10)
    straight.fit(synthetic, tmp_path / "straight")

    # a run "killed" after one epoch, then started again with the full budget, resumes at epoch 2
    make_sasrec(epochs=1, patience=10).fit(synthetic, tmp_path / "resumed")
    state = torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)
    assert state["epoch"] == 1 and state["optimizer"]["state"]
    assert state["config"]["epochs"] == 1 and state["signature"]["seed"] == 0
    resumed = make_sasrec(epochs=3, patience=10)
    resumed.fit(synthetic, tmp_path / "resumed")
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value)

    # a finished checkpoint is reused: no epoch runs
    def no_training(*args, **kwargs):
        raise AssertionError("retrained a finished run")

    monkeypatch.setattr(SASRecSystem, "_train", no_training)
    again = make_sasrec(epochs=3, patience=10)
    again.fit(synthetic, tmp_path / "straight")
    recs = synthetic.records("valid")
    np.testing.assert_array_equal(again.score(recs, 0), straight.score(recs, 0))


def test_a_checkpoint_of_another_config_is_not_resumed(synthetic, tmp_path, caplog):
    make_sasrec(epochs=1).fit(synthetic, tmp_path)
    other = make_sasrec(epochs=1, hidden=16)
    other.fit(synthetic, tmp_path)
    assert "different config" in caplog.text
    assert other.user_embeddings(synthetic.records("valid")[:2], 0).shape == (2, 16)


def test_finished_means_epochs_done_or_patience_exhausted():
    cfg = SASRecConfig(epochs=5, patience=2)
    assert not TrainState().finished(cfg)
    assert TrainState(epoch=5).finished(cfg)
    assert TrainState(epoch=3, bad_epochs=2).finished(cfg)
    assert not TrainState(epoch=3, bad_epochs=1).finished(cfg)


@pytest.mark.parametrize(
    "bad", [{"hidden": 30, "heads": 4}, {"dropout": 1.0}, {"loss": "bce"}, {"device": "tpu"}, {"max_len": 0}]
)
def test_bad_config_is_a_clear_error(bad):
    with pytest.raises(ConfigError):
        from_dict(SASRecConfig, bad)


def test_user_embeddings_are_history_only(synthetic):
    system = unfitted(synthetic)
    rec = synthetic.records("valid")[0]
    other_target = dataclasses.replace(rec, target=rec.target + 1 if rec.target + 1 < 40 else 0)
    np.testing.assert_array_equal(system.user_embeddings([rec], 0), system.user_embeddings([other_target], 0))
