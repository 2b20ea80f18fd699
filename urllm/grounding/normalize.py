"""Title normalisation shared by exact matching, BM25 and the raw-output statistics.

Art-Office titles are lower-cased with punctuation stripped, while an LLM writes "Crayola 24-Count
Crayons!"; both must meet in one canonical form. We drop symbols (™, ®), fold Unicode compatibility
forms (full-width digits, ligatures), lower-case, turn every run of non-alphanumeric characters into
one space and trim. Two titles are "the same" exactly when their normalised forms are equal.
"""

from __future__ import annotations

import re
import unicodedata

_NON_WORD = re.compile(r"[\W_]+", flags=re.UNICODE)


def normalize_title(text: str) -> str:
    """Canonical form: symbols dropped, NFKC, case-folded, alphanumeric runs joined by single spaces."""
    # symbols (trademark, registered, currency, arrows) go first: NFKC would spell ™ as "TM"
    text = "".join(" " if unicodedata.category(ch).startswith("S") else ch for ch in text)
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _NON_WORD.sub(" ", folded).strip()


def title_words(text: str) -> list[str]:
    """The words of the normalised title (BM25 terms)."""
    norm = normalize_title(text)
    return norm.split(" ") if norm else []


_LIST_MARKER = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*")
_DOMAIN_TAG = re.compile(r"^\[[^\]]{1,30}\]\s*")  # "[office] " as the prompts write item lines


def clean_generation(text: str) -> str:
    """The title part of a raw generation.

    Models answer ``"1. Title"``, ``'"Title"'``, ``"- [art] Title"`` (echoing the prompt's item lines)
    or open with a line such as ``"The next item for this user is:"``. We take the first non-empty line
    that does not end with a colon (or the first line if all do), without list marker, domain tag and
    quotes.
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    line = next((ln for ln in lines if not ln.endswith(":")), lines[0])
    line = _DOMAIN_TAG.sub("", _LIST_MARKER.sub("", line)).strip().strip("\"'`").strip()
    return line
