"""Selection on held-out training users: trainers never read the split they are reported on."""

import dataclasses

from urllm.data.schema import TwoDomainData
from urllm.eval.selection import heldout_users


def test_heldout_users_is_a_seeded_user_disjoint_fold(synthetic):
    train = synthetic.records("train")
    fit, held = heldout_users(train, 0.1, seed=0)
    assert len(fit) + len(held) == len(train)
    assert not {r.user for r in fit} & {r.user for r in held}
    n_users = len({r.user for r in train})
    assert len({r.user for r in held}) == round(0.1 * n_users)
    assert heldout_users(train, 0.1, seed=0) == (fit, held)
    assert heldout_users(train, 0.1, seed=1)[1] != held


def test_sasrec_selects_without_the_valid_split(synthetic, tmp_path):
    from urllm.baselines.sasrec import SASRecSystem
    from urllm.config import Config

    only_train = TwoDomainData(synthetic.name, synthetic.catalogue, {"train": synthetic.records("train")})
    cfg = Config()
    cfg = dataclasses.replace(cfg, sasrec=dataclasses.replace(cfg.sasrec, hidden=16, epochs=2, device="cpu"))
    system = SASRecSystem(cfg.sasrec, cfg.seed, cfg.eval)
    system.fit(only_train, tmp_path / "a")  # would raise DataError if it read "valid"
    assert [h["epoch"] for h in system.history] == [1, 2]
    assert all(set(h) >= {"art", "office"} for h in system.history)  # held-out MRR per domain
    none = dataclasses.replace(cfg, sasrec=dataclasses.replace(cfg.sasrec, selection="none"))
    fixed = SASRecSystem(none.sasrec, none.seed, none.eval)
    fixed.fit(only_train, tmp_path / "b")
    assert [h["epoch"] for h in fixed.history] == [1, 2] and "art" not in fixed.history[0]
