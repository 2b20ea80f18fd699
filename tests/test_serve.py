"""``urllm recommend`` / ``urllm serve`` on a tiny pipeline run (synthetic data, tiny graph): the API via
FastAPI's TestClient against independent oracles, bad requests, batching, start-up checks, and the page
driven in headless Chromium on a real loopback server."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from urllm.config import load_config
from urllm.configuration import ConfigError
from urllm.data.art_office import write_art_office
from urllm.data.schema import Catalogue, Record, TwoDomainData
from urllm.pipeline.runner import run_pipeline
from urllm.pipeline.stages import all_stages
from urllm.serve.query import Catalog, RequestError, full_sequence, split_history

fastapi = pytest.importorskip("fastapi", reason="urllm[serve] not installed (pip install 'urllm[serve]')")
from fastapi.testclient import TestClient  # noqa: E402

from urllm.serve.app import create_app  # noqa: E402
from urllm.serve.service import Recommendation  # noqa: E402

# one epoch, no leave-fold-out graphs, no selection: a few seconds
TINY_GRAPH = (
    "{hidden: 16, semantic_dim: 4, max_len: 6, batch_size: 64, epochs: 1, negatives: 0, graph_folds: 0, "
    "selection: none}"
)


@pytest.fixture(scope="module")
def run(tmp_path_factory, synthetic):
    """A pipeline run with the prepare, graph and index stages done; returns the config path."""
    root = tmp_path_factory.mktemp("serve")
    files = write_art_office(synthetic, root / "data")
    path = root / "tiny.yaml"
    path.write_text(
        f"""
run_dir: run
data:
  name: tiny
  root: data
  item_files: [{files["items_0"]}, {files["items_1"]}]
  train_file: {files["train"]}
  valid_file: {files["valid"]}
  test_file: {files["test"]}
graph: {TINY_GRAPH}
prompts:
  max_tokens: 200
grounding:
  top_n: 5
  fusion: llm_first
pipeline:
  systems: [graph]
  stages: [prepare, graph, index]
serve:
  systems: [graph, transition, urllm]
  max_history: 20
  max_k: 30
"""
    )
    cfg = load_config(path)
    run_pipeline(cfg, all_stages(cfg), ["index"], "valid")
    return path


@pytest.fixture(scope="module")
def llm():
    """A tiny random Llama with SmolLM2's tokenizer (urllm/llm/tiny.py): no download, microseconds."""
    from urllm.llm.config import LLMConfig
    from urllm.llm.model import load_tokenizer
    from urllm.llm.tiny import tiny_llama

    return tiny_llama(seed=1), load_tokenizer(LLMConfig()), None


@pytest.fixture(scope="module")
def service(run, llm):
    return Recommendation.load(load_config(run), str(run), llm=llm)


@pytest.fixture(scope="module")
def client(service):
    with TestClient(create_app(service)) as c:
        yield c


def oracle_top(service, record: Record, domain: int, k: int, system: str = "graph") -> list[int]:
    """Top-k by the system's own scores, history items left out, ties by id: computed here."""
    scores = np.asarray(service.systems[system].score([record], domain))[0]
    lo = service.data.catalogue.domain_range(domain).start
    ranked = sorted(range(len(scores)), key=lambda j: (-scores[j], j))
    return [lo + j for j in ranked if lo + j not in set(record.history)][:k]


def test_health_and_page(client, service):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["systems"] == ["graph", "transition", "urllm"]
    assert h["run_dir"] == str(service.cfg.run_path) and h["neighbours"] is True
    page = client.get("/")
    assert page.status_code == 200 and "<script>" in page.text and 'id="topk"' in page.text


def test_known_user_top_k_and_evidence(client, service, synthetic):
    user = synthetic.records("valid")[0].user
    ans = client.post("/recommend", json={"user": user, "domain": "office", "k": 5}).json()
    recs = [r for split in ("train", "valid", "test") for r in synthetic.records(split) if r.user == user]
    record = Record(user, full_sequence(recs), -1, 1)
    assert record.history[-1] in {r.target for r in recs}  # the held-out targets count as history
    assert [it["id"] for it in ans["items"]] == oracle_top(service, record, 1, 5)
    assert all(it["domain"] == "office" for it in ans["items"])
    ev = ans["evidence"]
    assert [h["id"] for h in ev["history"]] == list(record.history)
    assert {h["domain"] for h in ev["history"]} <= {"art", "office"}
    assert ev["user"] == {"id": user, "split": "valid"}
    assert len(ev["neighbours"]) == service.cfg.serve.n_neighbours
    for n in ev["neighbours"]:
        assert n["user"] != user and n["user"] in {r.user for r in synthetic.records("train")}
        assert all(it["domain"] == "office" and it["id"] not in record.history for it in n["items"])
    scores = np.asarray(service.systems["graph"].score([record], 1))[0]
    lo = synthetic.catalogue.domain_range(1).start
    cands = ev["candidates"]
    assert len(cands) == service.cfg.serve.n_candidates
    assert all(c["backbone"] == pytest.approx(scores[c["id"] - lo]) for c in cands)
    assert [c["backbone"] for c in cands] == sorted((c["backbone"] for c in cands), reverse=True)
    assert ev["grounding"]["mode"] == "none"


def test_typed_history_by_ids_and_titles(client, service, synthetic):
    cat = synthetic.catalogue
    ids = [3, 45, 7]
    body = {"history": [3, cat.titles[45], str(7)], "domain": "art", "k": 4, "system": "transition"}
    ans = client.post("/recommend", json=body).json()
    record = Record("x", tuple(ids), -1, 0)
    assert [it["id"] for it in ans["items"]] == oracle_top(service, record, 0, 4, "transition")
    assert [h["id"] for h in ans["evidence"]["history"]] == ids
    assert ans["user"] is None and ans["system"] == "transition"


def test_llm_system_scores_and_explains(client, service, synthetic):
    """urllm (listwise ranker over the graph's top 5, llm_first fusion), run live for a known user."""
    user = synthetic.records("valid")[2].user
    ans = client.post("/recommend", json={"user": user, "domain": "art", "k": 5, "system": "urllm"}).json()
    record = service.catalog.user_record(user, 0)
    assert [it["id"] for it in ans["items"]] == oracle_top(service, record, 0, 5, "urllm")
    ev = ans["evidence"]
    graph = np.asarray(service.systems["graph"].score([record], 0))[0]
    fused = np.asarray(service.systems["urllm"].score([record], 0))[0]
    top5 = sorted(range(len(graph)), key=lambda j: (-graph[j], j))[:5]
    assert sorted(c["id"] for c in ev["candidates"]) == sorted(top5)  # the backbone's top-K, all ranked
    for c in ev["candidates"]:
        assert c["llm"] is not None and c["fused"] == pytest.approx(fused[c["id"]])
        assert c["in_top_k"] == (c["id"] in [it["id"] for it in ans["items"]])
    assert ev["grounding"]["mode"] == "rank" and ev["grounding"]["backbone"] == "graph"
    assert [h["id"] for h in ev["history"]] == list(record.history)
    assert ev["neighbours"] and all(n["user"] != user for n in ev["neighbours"])


def test_calibrated_fusion_without_held_out_rows_fails_at_start_up(run, llm):
    cfg = load_config(run, ["grounding.fusion=calibrated", "serve.systems=[urllm]"])
    with pytest.raises(ConfigError, match=r"held-out training records have no LLM row .* --system urllm"):
        Recommendation.load(cfg, str(run), llm=llm)


@pytest.mark.parametrize(
    "body, status, starts",
    [
        ({"user": "nobody", "domain": "art"}, 404, "user: unknown user 'nobody'"),
        ({"history": [99999], "domain": "art"}, 400, "history[0]: unknown item id 99999"),
        ({"history": ["no such title"], "domain": "art"}, 400, "history[0]: unknown item title"),
        ({"history": [], "domain": "art"}, 400, "history: empty"),
        (
            {"history": list(range(21)), "domain": "art"},
            400,
            "history: 21 items, more than serve.max_history=20",
        ),
        ({"user": "u0", "domain": "garden"}, 400, "domain: unknown domain 'garden'"),
        ({"user": "u0"}, 400, "domain: required"),
        ({"user": "u0", "domain": "art", "k": 0}, 400, "k: must be in 1..30"),
        ({"user": "u0", "domain": "art", "k": 31}, 400, "k: must be in 1..30"),
        ({"user": "u0", "domain": "art", "k": "5"}, 400, "k: expected an integer"),
        ({"user": "u0", "domain": "art", "system": "sasrec"}, 400, "system: unknown or not loaded"),
        ({"user": "u0", "history": [1], "domain": "art"}, 400, "user: give either user or history"),
        ({"domain": "art"}, 400, "user: give user or history"),
        ({"user": "u0", "domain": "art", "colour": 1}, 400, "colour: unknown field"),
        ([1, 2], 400, "body: expected a JSON object"),
    ],
)
def test_bad_requests_name_the_field_and_the_server_keeps_serving(client, body, status, starts):
    r = client.post("/recommend", json=body)
    assert r.status_code == status
    detail = r.json()["detail"]
    assert detail.startswith(starts) and "\n" not in detail
    assert client.post("/recommend", json={"user": "u0", "domain": "art"}).status_code == 200


def test_malformed_json_and_bad_query_parameters(client):
    r = client.post(
        "/recommend", content=b'{"user": "u0", "domain": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("body: malformed JSON")
    r = client.get("/items", params={"q": "thing", "limit": "many"})
    assert r.status_code == 400 and r.json()["detail"].startswith("limit:")
    assert client.get("/items", params={"q": "x", "domain": "garden"}).status_code == 400


def test_title_search(client, synthetic):
    items = client.get("/items", params={"q": "YELLOW", "limit": 50}).json()["items"]
    want = [i for i, t in enumerate(synthetic.catalogue.titles) if "yellow" in t.lower()]
    assert sorted(it["id"] for it in items) == want
    office = client.get("/items", params={"q": "yellow", "domain": "office"}).json()["items"]
    assert office and all(it["domain"] == "office" for it in office)
    users = client.get("/users", params={"q": "u1", "limit": 5}).json()["users"]
    assert len(users) == 5 and all(u["user"].startswith("u1") for u in users)


def test_concurrent_requests_share_one_forward_pass(run, service):
    cfg = load_config(run, ["serve.batch_window_ms=300", "serve.max_batch_size=8"])
    service.cfg = cfg  # the batcher reads the serve section when the app is created
    users = sorted(service.catalog.sequences)[:8]
    with TestClient(create_app(service)) as c:
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(lambda u: c.post("/recommend", json={"user": u, "domain": "art"}).json(), users)
            )
        stats = c.get("/health").json()["batching"]
    assert stats["largest_batch"] > 1 and stats["batches"] < len(users)
    assert max(a["batch"]["size"] for a in answers) == stats["largest_batch"]
    for u, a in zip(users, answers, strict=True):  # batched answers = one-by-one answers
        [alone] = service.recommend([service.query({"user": u, "domain": "art"})])
        assert [it["id"] for it in a["items"]] == [it["id"] for it in alone["items"]]


def test_missing_or_stale_run_fails_at_start_up(run, tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"stage graph is stale \(config changed \(graph.hidden 16 -> 32\) since it ran\); run: .*--stages graph",
    ):
        Recommendation.load(load_config(run, ["graph.hidden=32"]), str(run))
    with pytest.raises(
        ConfigError, match=r"stage prepare has not run; run: urllm pipeline .*--stages prepare"
    ):
        Recommendation.load(load_config(run, [f"run_dir={tmp_path / 'empty'}"]), str(run))
    with pytest.raises(ConfigError, match=r"sasrec.pt: SASRec checkpoint missing"):
        Recommendation.load(load_config(run, ["serve.systems=[sasrec]"]), str(run))


def test_cli_recommend_json_and_text(run, service, synthetic, capsys):
    from urllm.cli import main

    user = synthetic.records("train")[0].user
    assert (
        main(["recommend", "--config", str(run), "--user", user, "--domain", "art", "-k", "3", "--json"]) == 0
    )
    ans = json.loads(capsys.readouterr().out)
    [same] = service.recommend([service.query({"user": user, "domain": "art", "k": 3})])
    assert [it["id"] for it in ans["items"]] == [it["id"] for it in same["items"]]
    titles = ",".join(synthetic.catalogue.titles[i] for i in (2, 50))
    assert main(["recommend", "--config", str(run), "--history", titles, "--domain", "office"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("top 10 office items for a typed history (graph):") and "similar users (3)" in out
    assert main(["recommend", "--config", str(run), "--history", "nope", "--domain", "office"]) == 2


def test_titles_with_commas_on_the_command_line():
    titles = ["Godfather, The (1972)", "Alien (1979)", "Heat (1995)", "Heat (1995)"]
    cat = Catalogue(("a", "b"), np.array([0, 0, 1, 1]), titles, [""] * 4, ["g", "al", "h1", "h2"])
    catalog = Catalog(TwoDomainData("t", cat, {"train": [Record("u", (0,), 1, 0)]}))
    assert split_history("Godfather, The (1972),Alien (1979),3", catalog) == [0, 1, 3]
    with pytest.raises(RequestError, match=r"history\[0\]: title 'Heat \(1995\)' names 2 items"):
        split_history("Heat (1995)", catalog)


# ---------------------------------------------------------------------------- the page in Chromium


def test_page_in_headless_chromium(service):
    """Pick a user on the page served by a real uvicorn on 127.0.0.1; the rendered top-k = /recommend."""
    pytest.importorskip("selenium", reason="selenium not installed (pip install 'urllm[serve]')")
    from urllm.serve.browser import LoopbackServer, chromium_binary, open_page, recommend_on_page

    if chromium_binary() is None or shutil.which("chromedriver") is None:
        pytest.skip("Chromium or chromedriver absent (Debian: apt-get install chromium chromium-driver)")
    import httpx

    user = sorted(service.catalog.sequences)[3]
    with LoopbackServer(create_app(service)) as server:
        driver = open_page(server.url)
        try:
            shown = recommend_on_page(driver, user=user, domain="office", k=4, system="urllm")
        finally:
            driver.quit()
        body = {"user": user, "domain": "office", "k": 4, "system": "urllm"}
        api = httpx.post(f"{server.url}/recommend", json=body).json()
    assert shown["ids"] == [it["id"] for it in api["items"]] and len(shown["ids"]) == 4
    assert shown["titles"] == [it["title"] for it in api["items"]]
    assert shown["n_history"] == len(api["evidence"]["history"])
    assert shown["n_neighbours"] == len(api["evidence"]["neighbours"])
