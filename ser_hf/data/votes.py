"""Rater votes -> the soft-label column ``label_distribution`` (see ``schema.OPTIONAL_FEATURES``).

A distribution is aligned with the corpus's class list: entry k is the share of votes for class k.
Votes for classes outside the list (IEMOCAP's frustration under the 4-class task) are left out and
the rest renormalised; an utterance with no vote inside the list gets None.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence


def vote_distribution(votes: Mapping[str, float], labels: Sequence[str]) -> list[float] | None:
    """``{"angry": 2, "sad": 1, "frustrated": 1}`` with labels (neutral, happy, angry, sad) ->
    ``[0, 0, 2/3, 1/3]``; None when no vote is for a listed class."""
    counts = [float(votes.get(label, 0.0)) for label in labels]
    total = sum(counts)
    if total <= 0:
        return None
    return [c / total for c in counts]
