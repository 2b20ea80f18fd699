import math

import numpy as np
import pytest

from urllm.eval.config import EvalConfig
from urllm.eval.evaluate import _sampled_columns, cold_start_bucket, evaluate
from urllm.eval.metrics import _harmonic, expected_metrics, greater_and_ties


def _metrics(scores, target, ks=(1, 5, 10)):
    g, t = greater_and_ties(np.array([scores], dtype=float), np.array([target]))
    return {k: float(v[0]) for k, v in expected_metrics(g, t, list(ks)).items()}


def test_hand_computed_single_rank():
    m = _metrics([3.0, 2.0, 1.0], target=1)  # rank 2, no ties
    assert m["MRR"] == pytest.approx(0.5)
    assert m["HR@1"] == 0.0 and m["HR@5"] == 1.0
    assert m["NDCG@5"] == pytest.approx(1 / math.log2(3))


def test_all_tied_is_the_random_ranking():
    m = _metrics([1.0, 1.0, 1.0, 1.0], target=0)  # ranks 1..4 equally likely
    assert m["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert m["HR@1"] == pytest.approx(0.25)
    assert m["HR@5"] == pytest.approx(1.0)
    assert m["NDCG@5"] == pytest.approx(sum(1 / math.log2(r + 1) for r in range(1, 5)) / 4)


def test_expected_metrics_match_brute_force_over_tie_breaks():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(50, 30)).astype(float)  # many ties
    target = rng.integers(0, 30, size=50)
    g, t = greater_and_ties(scores, target)
    fast = expected_metrics(g, t, [1, 5, 10])
    for i in range(50):
        ranks = np.arange(g[i] + 1, g[i] + t[i] + 2)  # every equally likely rank
        assert fast["MRR"][i] == pytest.approx(np.mean(1 / ranks))
        for k in (1, 5, 10):
            assert fast[f"HR@{k}"][i] == pytest.approx(np.mean(ranks <= k))
            assert fast[f"NDCG@{k}"][i] == pytest.approx(
                np.mean(np.where(ranks <= k, 1 / np.log2(ranks + 1), 0))
            )


def test_harmonic_numbers_exact_and_asymptotic():
    n = np.array([0, 1, 2, 63, 64, 1000, 20000])
    exact = np.array([sum(1 / r for r in range(1, int(k) + 1)) for k in n])
    assert np.allclose(_harmonic(n), exact, rtol=1e-12, atol=1e-12)


def test_nan_scores_rejected():
    with pytest.raises(ValueError, match="NaN"):
        greater_and_ties(np.array([[np.nan, 1.0]]), np.array([0]))


def test_cold_start_buckets():
    bins = [0, 1, 3, 6]
    got = [cold_start_bucket(n, bins) for n in (0, 1, 2, 3, 5, 6, 40)]
    assert got == ["0", "1-2", "1-2", "3-5", "3-5", "6+", "6+"]
    assert cold_start_bucket(1, [0, 1, 2]) == "1"


def test_sampled_columns_are_seeded_and_exclude_target():
    a = _sampled_columns(5, 100, 20, seed=1, d=0, index=3)
    b = _sampled_columns(5, 100, 20, seed=1, d=0, index=3)
    assert (a == b).all() and a[0] == 5 and 5 not in a[1:] and len(set(a)) == 21


class Oracle:
    """Puts the target first: every metric must be 1."""

    def __init__(self, data):
        self.data = data

    def fit(self, data, run_dir=None):
        pass

    def score(self, records, domain):
        lo = self.data.catalogue.domain_range(domain).start
        out = np.zeros((len(records), self.data.catalogue.domain_size(domain)))
        for i, r in enumerate(records):
            out[i, r.target - lo] = 1.0
        return out


@pytest.mark.parametrize("sampled", [0, 10])
def test_evaluate_oracle_scores_one(synthetic, sampled):
    res = evaluate(Oracle(synthetic), synthetic, "valid", EvalConfig(sampled_negatives=sampled), "oracle")
    assert set(res["per_domain"]) == {"art", "office"}
    for m in [*res["per_domain"].values(), res["overall"]]:
        assert m["MRR"] == 1.0 and m["HR@1"] == 1.0 and m["NDCG@10"] == 1.0
    assert res["overall"]["n"] == len(synthetic.records("valid"))
    assert sum(b["n"] for b in res["cold_start"]["art"].values()) == res["per_domain"]["art"]["n"]


def test_evaluate_rejects_wrong_score_shape(synthetic):
    class Bad(Oracle):
        def score(self, records, domain):
            return np.zeros((len(records), 3))

    with pytest.raises(ValueError, match="shape"):
        evaluate(Bad(synthetic), synthetic, "valid", EvalConfig(), "bad")
