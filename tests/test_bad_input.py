"""A fuzz table of malformed inputs for the three readers: one mutation of a tiny valid fixture per case.

Every case ends in one of three documented outcomes (docs/data.md):
  ``error``  a one-line :class:`DataError` naming the file (and the line where there is one);
  ``warn``   the data loads and one WARNING names the file (and line) with a count;
  ``ok``     the data loads as the unmutated fixture does (encoding variants that mean the same).
Never another exception type: anything else fails the test with its traceback.
"""

from __future__ import annotations

import gzip
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_data_readers import (
    AMAZON,
    AO_ART,
    AO_OFFICE,
    AO_TRAIN,
    AO_VALID,
    INTER,
    ITEM,
    amazon_cfg,
    readable,
    recbole_cfg,
    write_ao,
)

from urllm.data.load import load_data_from_config
from urllm.data.schema import DataError

Mutation = Callable[[bytes], bytes]


# --------------------------------------------------------------------------- mutations of bytes


def on_line(n: int, fn: Callable[[bytes], bytes]) -> Mutation:
    """Apply ``fn`` to line ``n`` (1-based)."""

    def mutate(raw: bytes) -> bytes:
        lines = raw.split(b"\n")
        lines[n - 1] = fn(lines[n - 1])
        return b"\n".join(lines)

    return mutate


def sub(old: bytes, new: bytes, n: int | None = None) -> Mutation:
    """Replace ``old`` by ``new`` (on line ``n`` only, when given)."""
    if n is not None:
        return on_line(n, lambda line: line.replace(old, new, 1))
    return lambda raw: raw.replace(old, new, 1)


def insert_after(n: int, text: bytes) -> Mutation:
    def mutate(raw: bytes) -> bytes:
        lines = raw.split(b"\n")
        return b"\n".join([*lines[:n], text, *lines[n:]])

    return mutate


def repeat_line(n: int) -> Mutation:
    return lambda raw: raw + raw.split(b"\n")[n - 1].rstrip(b"\r") + (b"\r\n" if b"\r\n" in raw else b"\n")


def drop_line(n: int) -> Mutation:
    return lambda raw: b"\n".join(line for i, line in enumerate(raw.split(b"\n"), 1) if i != n)


BOM = b"\xef\xbb\xbf"
bom: Mutation = lambda raw: BOM + raw  # noqa: E731
crlf: Mutation = lambda raw: raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # noqa: E731
lf: Mutation = lambda raw: raw.replace(b"\r\n", b"\n")  # noqa: E731
empty: Mutation = lambda raw: b""  # noqa: E731
header_only: Mutation = lambda raw: raw.split(b"\n")[0] + b"\n"  # noqa: E731
trailing_blank: Mutation = lambda raw: raw + b"\n\n\n"  # noqa: E731
truncate_gz: Mutation = lambda raw: gzip.compress(raw)[:-12]  # noqa: E731
corrupt_gz: Mutation = lambda raw: (lambda z: z[:20] + b"\x00" * 8 + z[28:])(gzip.compress(raw))  # noqa: E731
not_gzip: Mutation = lambda raw: b"plain text, not gzip\n"  # noqa: E731
RAW_GZ = (truncate_gz, corrupt_gz, not_gzip)  # they produce the compressed bytes themselves


@dataclass(frozen=True)
class Case:
    id: str
    reader: str  # ao | rb | az | azgz
    file: str  # the mutated file (None-like "" for a config-level case)
    mutate: Mutation | None  # None: delete the file
    expect: str  # error | warn | ok
    words: str = ""  # in the message
    line: int | None = None  # named as file:line


HUGE = b"u7\t4999\t" + b"\t".join(b"%d|%d|%d" % (k % 5, k, k) for k in range(5000)) + b"\t"
LATIN1 = b"\xe9"  # 'e-acute' in Latin-1: not UTF-8

CASES = [
    # ---- Art-Office / C2DSR
    Case("ao-latin1-train", "ao", "train.txt", sub(b"u1", b"u" + LATIN1, 2), "error", "not valid UTF-8", 2),
    Case("ao-latin1-items", "ao", "art.csv", sub(b"brush", b"br" + LATIN1, 4), "error", "not valid UTF-8", 4),
    Case("ao-bom-train", "ao", "train.txt", bom, "ok"),
    Case("ao-bom-items", "ao", "art.csv", bom, "ok"),
    Case("ao-crlf-train", "ao", "train.txt", crlf, "ok"),
    Case("ao-crlf-items", "ao", "office.csv", crlf, "ok"),
    Case("ao-trailing-blank", "ao", "valid.txt", trailing_blank, "ok"),
    Case("ao-blank-middle", "ao", "train.txt", insert_after(1, b""), "warn", "skipped 1 blank line", 2),
    Case("ao-blank-spaces", "ao", "art.csv", insert_after(2, b"   "), "warn", "skipped 1 blank line", 3),
    Case("ao-too-few-fields", "ao", "train.txt", insert_after(2, b"u2\t3"), "error", "expected user", 3),
    Case("ao-target-pos-text", "ao", "train.txt", sub(b"\t3\t", b"\tx\t", 1), "error", "'x' is not an integer", 1),
    Case("ao-target-pos-wrong", "ao", "valid.txt", sub(b"\t2\t", b"\t1\t", 1), "error", "not the last of", 1),
    Case("ao-position-text", "ao", "train.txt", sub(b"3|1|1", b"3|one|1", 2), "error", "non-integer position", 2),
    Case("ao-item-text", "ao", "train.txt", sub(b"3|1|1", b"x|1|1", 1), "error", "does not start with", 1),
    Case("ao-unknown-item", "ao", "valid.txt", sub(b"4|1|1", b"7|1|1"), "error", "unknown item id 7", 1),
    Case("ao-negative-item", "ao", "valid.txt", sub(b"4|1|1", b"-1|1|1"), "error", "unknown item id -1", 1),
    Case("ao-empty-history", "ao", "valid.txt", insert_after(1, b"u8\t0\t1|0|0\t"), "error", "empty history", 2),
    Case("ao-empty-user", "ao", "valid.txt", sub(b"u9", b""), "error", "empty user id", 1),
    Case("ao-huge-history", "ao", "train.txt", lambda raw: raw + HUGE + b"\n", "ok"),
    Case("ao-duplicate-record", "ao", "train.txt", repeat_line(1), "warn", "dropped 1 exact duplicate", 3),
    Case("ao-user-in-train-and-valid", "ao", "valid.txt", sub(b"u9", b"u1"), "warn", "also in train", 1),
    Case("ao-duplicate-item-id", "ao", "art.csv", sub(b"a2,brush,2", b"a2,brush,1"), "error", "duplicate item id 1", 4),
    Case("ao-id-gap", "ao", "office.csv", sub(b"pen,4", b"pen,9"), "error", "breaks the id range", 3),
    Case("ao-id-in-other-domain", "ao", "office.csv", sub(b"stapler,3", b"stapler,0"), "error", "duplicate item id 0", 2),
    Case("ao-id-text", "ao", "art.csv", sub(b"brush,2", b"brush,two"), "error", "not an integer", 4),
    Case("ao-missing-column", "ao", "office.csv", sub(b",item_attribute", b""), "error", "expected header", 1),
    Case("ao-extra-column", "ao", "art.csv", sub(b"paint red", b"paint red,x"), "error", "expected 4 columns", 2),
    Case("ao-empty-title", "ao", "office.csv", sub(b"o1,pen,", b"o1,,"), "warn", "1 item with an empty title", 3),
    Case("ao-unclosed-quote", "ao", "art.csv", sub(b"blue paint", b'"blue paint'), "error", "", None),
    Case("ao-empty-train", "ao", "train.txt", empty, "error", "empty file"),
    Case("ao-header-only-items", "ao", "office.csv", header_only, "error", "no items"),
    Case("ao-missing-valid", "ao", "valid.txt", None, "error", "not found"),
    Case("ao-missing-items", "ao", "art.csv", None, "error", "not found"),
    # ---- RecBole atomic files (CRLF fixtures)
    Case("rb-latin1-inter", "rb", "d.inter", sub(b"u2", b"u" + LATIN1, 7), "error", "not valid UTF-8", 7),
    Case("rb-latin1-item", "rb", "d.item", sub(b"Gamma", b"Gamm" + LATIN1), "error", "byte offset", 4),
    Case("rb-bom-inter", "rb", "d.inter", bom, "ok"),
    Case("rb-bom-item", "rb", "d.item", bom, "ok"),
    Case("rb-lf-line-ends", "rb", "d.inter", lf, "ok"),
    Case("rb-trailing-blank", "rb", "d.item", trailing_blank, "ok"),
    Case("rb-blank-middle", "rb", "d.inter", insert_after(3, b"\r"), "warn", "skipped 1 blank line", 4),
    Case("rb-field-count", "rb", "d.inter", sub(b"\t4\t20", b"\t20", 3), "error", "expected 4 tab-separated", 3),
    Case("rb-rating-text", "rb", "d.inter", sub(b"\t5\t10", b"\tfive\t10"), "error", "'five' is not a number", 2),
    Case("rb-time-text", "rb", "d.inter", sub(b"\t4\t20", b"\t4\tlate"), "error", "'late' is not a number", 3),
    Case("rb-unknown-item", "rb", "d.inter", sub(b"u1\tm2", b"u1\tm9"), "error", "'m9' is not in the item", 3),
    Case("rb-empty-user", "rb", "d.inter", sub(b"u3\tm1", b"\tm1"), "error", "empty user_id", 12),
    Case("rb-duplicate-item-id", "rb", "d.item", sub(b"m3\t", b"m2\t"), "error", "duplicate item id 'm2'", 4),
    Case("rb-empty-item-id", "rb", "d.item", sub(b"m3\t", b"\t"), "error", "empty item_id", 4),
    Case("rb-duplicate-interaction", "rb", "d.inter", repeat_line(2), "warn", "1 exact duplicate interaction", 14),
    Case("rb-missing-column", "rb", "d.inter", sub(b"\ttimestamp:float", b""), "error", "no column 'timestamp'", 1),
    Case("rb-header-type", "rb", "d.item", sub(b"genre:token", b"genre:text"), "error", "expected name:type", 1),
    Case("rb-header-untyped", "rb", "d.inter", sub(b"rating:float", b"rating"), "error", "expected name:type", 1),
    Case("rb-empty-title", "rb", "d.item", sub(b"Beta", b""), "warn", "1 item with an empty movie_title", 3),
    Case("rb-empty-inter", "rb", "d.inter", empty, "error", "empty file"),
    Case("rb-header-only-item", "rb", "d.item", header_only, "error", "no items"),
    Case("rb-missing-item", "rb", "d.item", None, "error", "not found"),
    Case("rb-no-heart-items", "rb", "d.item", lambda r: r.replace(b"Comedy", b"Western").replace(b"Drama", b"Western"),
         "error", "tiny: no user is left"),  # fmt: skip
    # ---- Amazon 2018 JSON lines (plain and .gz)
    Case("az-latin1-review", "az", "Arts.json", sub(b"ok", b"d" + LATIN1, 2), "error", "not valid UTF-8", 2),
    Case("az-latin1-gz", "azgz", "meta_Office.json.gz", sub(b"Stapler", LATIN1), "error", "(uncompressed)", 1),
    Case("az-bom-meta", "az", "meta_Arts.json", bom, "ok"),
    Case("az-crlf-reviews", "az", "Office.json", crlf, "ok"),
    Case("az-blank-middle", "az", "Office.json", insert_after(2, b""), "warn", "skipped 1 blank line", 3),
    Case("az-invalid-json", "az", "Arts.json", sub(b', "summary": "ok"}', b"", 3), "error", "invalid JSON", 3),
    Case("az-not-an-object", "az", "meta_Office.json", on_line(2, lambda _: b"[1, 2]"), "error", "JSON object", 2),
    Case("az-missing-time", "az", "Office.json", sub(b', "unixReviewTime": 300', b"", 3), "error", "'unixReviewTime'", 3),
    Case("az-time-text", "az", "Office.json", sub(b"100", b'"noon"', 2), "error", "is not a number", 2),
    Case("az-missing-user", "az", "Arts.json", sub(b'"reviewerID": "u3", ', b"", 5), "error", "'reviewerID'", 5),
    Case("az-missing-asin", "az", "meta_Arts.json", sub(b'"asin": "A2", ', b"", 2), "error", "'asin'", 2),
    Case("az-truncated-gz", "azgz", "Arts.json.gz", truncate_gz, "error", "ends early (truncated) after line"),
    Case("az-corrupt-gz", "azgz", "Office.json.gz", corrupt_gz, "error", "compressed file"),
    Case("az-not-gzip", "azgz", "meta_Arts.json.gz", not_gzip, "error", "compressed"),
    Case("az-empty-meta", "az", "meta_Office.json", empty, "error", "empty file"),
    Case("az-missing-reviews", "az", "Office.json", None, "error", "not found"),
    Case("az-unknown-item", "az", "Office.json", sub(b'"O2"', b'"O7"', 3), "warn", "dropped 1 reviews of 1 items"),
    Case("az-empty-title", "az", "meta_Arts.json", sub(b'"Brush Kit"', b'"  "'), "warn", "(2 metadata lines had no title)"),
    Case("az-duplicate-review", "az", "Office.json", repeat_line(4), "warn", "dropped 2 repeated reviews"),
]  # fmt: skip


# --------------------------------------------------------------------------- running a case


def _setup(reader: str, root: Path):
    """Write the valid fixture of ``reader`` under ``root``; returns a function making its config."""
    if reader == "ao":
        write_ao(root)
        return lambda: write_ao(
            root, **{k: None for k in ("art_csv", "office_csv", "train_txt", "valid_txt")}
        )
    if reader == "rb":
        recbole_cfg(root)
        return lambda: recbole_cfg(root, item=None, inter=None)
    for f in (AMAZON / "2018").iterdir():
        if reader == "azgz":
            (root / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes()))
        else:
            shutil.copy(f, root / f.name)
    return lambda: amazon_cfg(root, "json.gz" if reader == "azgz" else "json")


def _mutate(path: Path, mutation: Mutation | None) -> None:
    if mutation is None:
        path.unlink()
        return
    raw = path.read_bytes()
    if path.suffix == ".gz" and mutation not in RAW_GZ:
        path.write_bytes(gzip.compress(mutation(gzip.decompress(raw))))
    elif path.suffix == ".gz":
        path.write_bytes(mutation(gzip.decompress(raw)))
    else:
        path.write_bytes(mutation(raw))


def test_the_table_is_large_and_covers_every_reader():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    for reader in ("ao", "rb", "az"):
        assert sum(c.reader.startswith(reader) for c in CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, caplog):
    clean, bad = tmp_path / "clean", tmp_path / "bad"
    clean.mkdir()
    bad.mkdir()
    reference = readable(load_data_from_config(_setup(case.reader, clean)()))
    config = _setup(case.reader, bad)
    path = bad / case.file
    _mutate(path, case.mutate)
    caplog.clear()
    if case.expect == "error":
        with pytest.raises(DataError) as exc:
            load_data_from_config(config())
        msg = str(exc.value)
        assert "\n" not in msg, msg
        assert case.words in msg, msg
        if not case.id.startswith("rb-no-"):  # a dataset-level error names the dataset and domain
            assert str(path) in msg, msg
        if case.line is not None:
            assert f"{path}:{case.line}:" in msg, msg
        return
    with caplog.at_level(logging.WARNING, logger="urllm.data"):
        data = load_data_from_config(config())
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    if case.expect == "ok":
        got = readable(data)
        if case.id == "ao-huge-history":
            assert len(got["train"]) == len(reference["train"]) + 1 and len(got["train"][-1][1]) == 4999
            return
        assert got == reference
        assert not [w for w in warnings if str(path) in w], warnings
        assert all(not u.startswith("\ufeff") for recs in got.values() for u, *_ in recs)
        return
    mine = [w for w in warnings if case.words in w]
    assert len(mine) == 1, warnings
    if case.id in ("az-empty-title", "az-duplicate-review"):
        return  # counted per reviews file (the titles) or over the dataset (repeats), not per line
    assert str(path) in mine[0], mine
    if case.line is not None:
        assert f"{path}:{case.line}" in mine[0], mine


def test_bom_no_longer_splits_a_user(tmp_path):
    """The original report: a BOM made train.txt's first user ``'\\ufeffu1'`` besides ``'u1'``."""
    cfg = write_ao(tmp_path, train_txt="\ufeff" + AO_TRAIN)
    assert {r.user for r in load_data_from_config(cfg).records("train")} == {"u1"}


def test_fixtures_are_valid(tmp_path):
    """The unmutated fixtures load without a warning (so every warning above comes from its mutation)."""
    assert AO_ART and AO_OFFICE and AO_VALID and ITEM and INTER
    for reader in ("ao", "rb"):
        root = tmp_path / reader
        root.mkdir()
        load_data_from_config(_setup(reader, root)())
