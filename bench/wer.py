"""Word error rate over normalized words: lowercase, punctuation stripped, Levenshtein over words."""

from __future__ import annotations

import re

import numpy as np

_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    """Lowercase words with punctuation removed; hyphens split words, apostrophes stay inside them."""
    return [w.strip("'") for w in _WORD.findall(text.lower().replace("-", " ")) if w.strip("'")]


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Substitutions, insertions and deletions turning reference into hypothesis (Levenshtein), a row at a time.

    Each row takes deletions and substitutions from the row above in one vector step; the insertion chain along
    the row is then a running minimum of (cost - column), so hour-long transcripts align in seconds.
    """
    if not reference or not hypothesis:
        return max(len(reference), len(hypothesis))
    ids: dict[str, int] = {}
    ref = [ids.setdefault(word, len(ids)) for word in reference]
    hyp = np.array([ids.setdefault(word, len(ids)) for word in hypothesis], dtype=np.int32)
    columns = np.arange(len(hyp) + 1, dtype=np.int32)
    row = columns.copy()
    candidate, differs = np.empty_like(row), np.empty_like(hyp)
    for i, word in enumerate(ref, 1):
        candidate[0] = i
        np.not_equal(hyp, word, out=differs)
        np.add(row[:-1], differs, out=candidate[1:])
        np.minimum(candidate[1:], row[1:] + 1, out=candidate[1:])
        candidate -= columns
        np.minimum.accumulate(candidate, out=row)
        row += columns
    return int(row[-1])


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance divided by the number of reference words."""
    ref = words(reference)
    return edit_distance(ref, words(hypothesis)) / max(len(ref), 1)
