"""Word error rate over normalized words: lowercase, punctuation stripped, Levenshtein over words."""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    """Lowercase words with punctuation removed; hyphens split words, apostrophes stay inside them."""
    return [w.strip("'") for w in _WORD.findall(text.lower().replace("-", " ")) if w.strip("'")]


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Substitutions, insertions and deletions turning reference into hypothesis (Levenshtein)."""
    row = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, 1):
        diagonal, row[0] = row[0], i
        for j, hyp_word in enumerate(hypothesis, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (ref_word != hyp_word))
    return row[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance divided by the number of reference words."""
    ref = words(reference)
    return edit_distance(ref, words(hypothesis)) / max(len(ref), 1)
