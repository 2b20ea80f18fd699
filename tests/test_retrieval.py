"""User index (FAISS against the exact numpy oracle), neighbours on the synthetic tastes, hit rates."""

from __future__ import annotations

import numpy as np
import pytest

from urllm.config import load_config
from urllm.configuration import ConfigError
from urllm.data.schema import Record
from urllm.retrieval.config import RetrievalConfig
from urllm.retrieval.index import ExactUserIndex, FaissUserIndex, load_index, make_index
from urllm.retrieval.neighbours import UserRetriever, hit_rates, training_users
from urllm.retrieval.svd import PureSVD


def clustered(n: int, dim: int, n_clusters: int = 20, seed: int = 0) -> np.ndarray:
    """Points around random centres: a realistic (non-uniform) embedding cloud."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    return (centres[rng.integers(n_clusters, size=n)] + 0.5 * rng.normal(size=(n, dim))).astype(np.float32)


def ids_of(n: int) -> list[str]:
    return [f"u{i}" for i in range(n)]


class TasteEmbedder:
    """Stand-in for the graph encoder: per domain view, the history's item counts per latent taste."""

    def __init__(self, catalogue, n_clusters: int = 4):
        self.taste = np.array([int(t.split("taste")[1].split()[0]) for t in catalogue.texts])
        self.domain = catalogue.item_domain
        self.n = n_clusters

    def user_embeddings(self, records, domain):
        out = np.zeros((len(records), 2 * self.n), dtype=np.float32)
        for row, r in enumerate(records):
            for i in r.history:
                out[row, self.taste[i]] += 1.0
                out[row, self.n + self.taste[i]] += float(self.domain[i] == domain)
        return out


# --------------------------------------------------------------------------- the index port


@pytest.mark.parametrize("normalize", [True, False])
def test_faiss_flat_agrees_with_exact_oracle(normalize):
    x = clustered(600, 24, seed=1)
    q = np.concatenate([x[:40], clustered(40, 24, seed=2)])  # indexed users and outsiders
    exclude = [f"u{i}" for i in range(40)] + [None] * 40
    exact, flat = ExactUserIndex(normalize), FaissUserIndex("Flat", normalize)
    exact.build(x, ids_of(600))
    flat.build(x, ids_of(600))
    pe, se = exact.search(q, 10, exclude)
    pf, sf = flat.search(q, 10, exclude)
    np.testing.assert_array_equal(pe, pf)
    np.testing.assert_allclose(se, sf, rtol=1e-5, atol=1e-5)
    assert all(pe[i, 0] != i for i in range(40))  # the query user itself is never returned
    assert np.all(np.diff(se, axis=1) <= 1e-6)  # best first


def test_exact_oracle_matches_brute_force_and_breaks_ties_by_position():
    x = np.array([[1, 0], [0, 1], [1, 0], [2, 0], [0.5, 0.5]], dtype=np.float32)
    index = ExactUserIndex(normalize=True)
    index.build(x, ["a", "b", "c", "d", "e"])
    pos, sc = index.search(np.array([[1.0, 0.0]], dtype=np.float32), 4, exclude_ids=["c"])
    # a, c, d tie at cosine 1 (c excluded) -> a, d by position; then e (0.707), then b (0)
    assert pos.tolist() == [[0, 3, 4, 1]]
    np.testing.assert_allclose(sc[0], [1, 1, np.sqrt(0.5), 0], atol=1e-6)


def test_fewer_users_than_k_pads_with_minus_one():
    index = ExactUserIndex()
    index.build(np.eye(3, dtype=np.float32), ["a", "b", "c"])
    pos, sc = index.search(np.eye(3, dtype=np.float32)[:1], 5, exclude_ids=["a"])
    assert pos[0, :2].tolist() == [1, 2] and pos[0, 2:].tolist() == [-1, -1, -1]
    assert np.all(np.isneginf(sc[0, 2:]))


@pytest.mark.parametrize(
    ("factory", "nprobe", "ef_search", "min_recall"),
    [("HNSW32", 1, 256, 0.95), ("IVF32,Flat", 8, 1, 0.95), ("IVF32,PQ16x4np", 8, 1, 0.6)],
)
def test_approximate_indexes_recall_against_exact(factory, nprobe, ef_search, min_recall):
    x = clustered(3000, 32, seed=3)
    q = clustered(100, 32, seed=4)
    exact = ExactUserIndex()
    exact.build(x, ids_of(3000))
    approx = FaissUserIndex(factory, nprobe=nprobe, ef_search=ef_search)
    approx.build(x, ids_of(3000))
    pe, _ = exact.search(q, 10)
    pa, _ = approx.search(q, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(pa, pe, strict=True)])
    assert recall >= min_recall, recall


@pytest.mark.parametrize("factory", ["exact", "Flat", "IVF8,Flat"])
def test_save_load_round_trip(tmp_path, factory):
    x = clustered(400, 16, seed=5)
    index = make_index(factory, nprobe=4)
    index.build(x, ids_of(400))
    index.save(tmp_path / "idx")
    again = load_index(tmp_path / "idx")
    assert again.ids == index.ids
    for a, b in zip(index.search(x[:20], 7, ids_of(20)), again.search(x[:20], 7, ids_of(20)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_index_input_is_a_clear_error():
    with pytest.raises(ConfigError, match="retrieval.index_factory"):
        FaissUserIndex("NotAnIndex42").build(clustered(50, 8), ids_of(50))
    with pytest.raises(ValueError, match="distinct"):
        ExactUserIndex().build(clustered(2, 8), ["a", "a"])
    with pytest.raises(ValueError, match="NaN"):
        ExactUserIndex().build(np.full((2, 3), np.nan, dtype=np.float32), ["a", "b"])
    with pytest.raises(ConfigError, match="retrieval: k must be >= 1"):
        load_config(None, ["retrieval.k=0"])


# --------------------------------------------------------------------------- neighbours


def test_training_users_rebuilds_full_sequences():
    recs = [Record("a", (1, 2), 7, 0), Record("a", (1, 2), 9, 1), Record("b", (3,), 4, 0)]
    users, items = training_users(recs)
    assert [r.user for r in users] == ["a", "b"]
    assert items == {"a": (1, 2, 7, 9), "b": (3, 4)}


def test_neighbours_share_the_query_taste_and_never_leak(synthetic):
    train = synthetic.records("train")
    emb = TasteEmbedder(synthetic.catalogue)
    retriever = UserRetriever.build(emb, train, RetrievalConfig(k=5))
    _, items = training_users(train)
    taste = emb.taste

    def user_taste(seq):
        return np.bincount(taste[list(seq)], minlength=4).argmax()

    for split in ("train", "valid"):
        recs = synthetic.records(split)
        nbrs, sims = retriever.search(emb, recs)
        assert all(len(n) == 5 and r.user not in n for r, n in zip(recs, nbrs, strict=True))
        assert all(set(n) <= set(items) for n in nbrs)  # only training users are ever neighbours
        assert all(s == sorted(s, reverse=True) for s in sims)
        same = np.mean(
            [
                user_taste(items[v]) == user_taste(r.history)
                for r, n in zip(recs, nbrs, strict=True)
                for v in n
            ]
        )
        assert same >= 0.9, same


def test_retriever_save_load(tmp_path, synthetic):
    train = synthetic.records("train")
    emb = TasteEmbedder(synthetic.catalogue)
    retriever = UserRetriever.build(emb, train, RetrievalConfig(k=3))
    retriever.save(tmp_path / "index")
    again = UserRetriever.load(tmp_path / "index", RetrievalConfig(k=3))
    recs = synthetic.records("valid")
    assert retriever.search(emb, recs)[0] == again.search(emb, recs)[0]


# --------------------------------------------------------------------------- hit rates


def test_hit_rates_by_hand():
    item_domain = np.array([0, 0, 0, 1, 1, 1])
    items = {"a": (0, 3), "b": (1, 4), "c": (0, 1, 5)}
    recs = [Record("q", (3,), 1, 0), Record("a", (3,), 0, 0)]  # an outsider and a training user
    nbrs = [["a", "b"], ["c", "b"]]
    out = hit_rates(recs, nbrs, items, item_domain, [1, 2])
    # k=1: q's first neighbour a lacks item 1 (miss); a's first neighbour c has item 0 (hit) -> 1/2
    # k=2: q hits through b -> 2/2
    assert out["1"]["retrieved"] == 0.5 and out["2"]["retrieved"] == 1.0
    # random: q draws from {a, b, c}, holders of 1 are {b, c}: P(k=1) = 2/3, P(k=2) = 1;
    # a draws from {b, c}, holders of 0 other than a: {c}: P(k=1) = 1/2, P(k=2) = 1
    assert out["1"]["random"] == pytest.approx((2 / 3 + 1 / 2) / 2, abs=1e-4)
    assert out["2"]["random"] == 1.0


def test_random_hit_rate_expectation_matches_simulation(synthetic):
    train = synthetic.records("train")
    _, items = training_users(train)
    recs = synthetic.records("valid")
    dom = synthetic.catalogue.item_domain
    exact = hit_rates(recs, [[] for _ in recs], items, dom, [3])["3"]["random"]
    rng = np.random.default_rng(0)
    users = list(items)
    sims = []
    for _ in range(400):
        draws = [[users[j] for j in rng.choice(len(users), 3, replace=False)] for _ in recs]
        sims.append(hit_rates(recs, draws, items, dom, [3])["3"]["retrieved"])
    assert exact == pytest.approx(np.mean(sims), abs=0.01)


def test_puresvd_retrieval_beats_random_and_embeds_history_only(synthetic):
    svd = PureSVD(load_config(None, ["retrieval.svd.dim=8"]).retrieval.svd)
    svd.fit(synthetic)
    recs = synthetic.records("valid")
    emb = svd.user_embeddings(recs, 1)
    assert emb.shape == (len(recs), 16) and emb.dtype == np.float32
    moved = [Record(r.user, r.history, r.target + 1 if r.target + 1 < 80 else r.target - 1, 1) for r in recs]
    np.testing.assert_array_equal(emb, svd.user_embeddings(moved, 1))  # the target is never read
    assert svd.score(recs, 0).shape == (len(recs), 40)
    retriever = UserRetriever.build(svd, synthetic.records("train"), RetrievalConfig(k=5))
    nbrs, _ = retriever.search(svd, recs)
    _, items = training_users(synthetic.records("train"))
    rates = hit_rates(recs, nbrs, items, synthetic.catalogue.item_domain, [1, 5])
    # 40 items per domain: five random users already hold most targets, so the 2x bar applies at k=1
    assert rates["1"]["retrieved"] >= 2 * rates["1"]["random"], rates
    assert rates["5"]["retrieved"] > rates["5"]["random"], rates


def test_encoder_lookup_errors_are_clear(synthetic, tmp_path):
    from urllm.systems import fitted_embedder, fitted_system

    cfg = load_config(None, [f"run_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="unknown system 'nope'"):
        fitted_system("nope", cfg, synthetic)
    with pytest.raises(ConfigError, match="no load"):
        fitted_system("svd", cfg, synthetic, from_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="retrieval.encoder: 'popularity' is a baseline system, not a user"):
        load_config(None, [f"run_dir={tmp_path}", "retrieval.encoder=popularity"])  # caught at load
    unchecked = load_config(None, [f"run_dir={tmp_path}", "retrieval.encoder=popularity"], check=False)
    with pytest.raises(ConfigError, match="no user_embeddings"):
        fitted_embedder(unchecked, synthetic)


def test_hit_rate_command_writes_the_documented_json(tmp_path, synthetic):
    import json

    from urllm.cli import main
    from urllm.data.art_office import write_art_office

    files = write_art_office(synthetic, tmp_path / "data")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        f"run_dir: run\ndata:\n  name: tiny\n  root: data\n"
        f"  item_files: [{files['items_0']}, {files['items_1']}]\n"
        f"  train_file: {files['train']}\n  valid_file: {files['valid']}\n"
    )
    out = tmp_path / "hit.json"
    argv = ["retrieval", "hit-rate", "--config", str(cfg), "--split", "valid", "--out", str(out)]
    assert main([*argv, "retrieval.encoder=svd", "retrieval.svd.dim=8"]) == 0
    report = json.loads(out.read_text())
    assert set(report["hit_rate"]) == {"1", "5", "10"}
    for k, v in report["hit_rate"].items():
        assert 0 <= v["random"] <= 1 and 0 <= v["retrieved"] <= 1, (k, v)
    assert not (tmp_path / "run" / "index").exists()  # the index stage's folder is the pipeline's own
