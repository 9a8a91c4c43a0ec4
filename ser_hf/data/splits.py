"""Speaker-independent splits: a speaker's utterances all land in one split.

Random utterance-level splits leak speaker identity into the test set and inflate scores, so
every split here is decided per speaker.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import datasets
import numpy as np

from ser_hf.data.schema import rows_to_dataset_dict

SPLIT_ORDER = ("train", "dev", "test")


def order_splits(dataset_dict: datasets.DatasetDict) -> datasets.DatasetDict:
    """Put train, dev, test first (then any others by name) whatever order rows came in."""

    def rank(name: str):
        return (SPLIT_ORDER.index(name), "") if name in SPLIT_ORDER else (len(SPLIT_ORDER), name)

    return datasets.DatasetDict({name: dataset_dict[name] for name in sorted(dataset_dict, key=rank)})


def fixed_speaker_split(
    test_speakers: Iterable[str], dev_speakers: Iterable[str] = (), *, known: Iterable[str] | None = None
) -> Callable[[str], str]:
    """Map a speaker id to "test"/"dev"/"train" from two fixed held-out sets (corpus protocols).

    With ``known`` (the corpus's speakers), a held-out speaker that does not exist is an error
    rather than a silently empty split.
    """
    test, dev = {str(s) for s in test_speakers}, {str(s) for s in dev_speakers}
    both = sorted(test & dev)
    if both:
        raise ValueError(f"speakers {both} are listed as both test and dev speakers")
    if known is not None:
        absent = sorted((test | dev) - {str(s) for s in known})
        if absent:
            raise ValueError(f"held-out speakers {absent} do not occur in the corpus")

    def split_of(speaker: str) -> str:
        return "test" if speaker in test else "dev" if speaker in dev else "train"

    return split_of


def _as_rows(data) -> list[dict]:
    if isinstance(data, datasets.DatasetDict):
        return [row for part in data.values() for row in part.to_list()]
    if isinstance(data, datasets.Dataset):
        return data.to_list()
    return [dict(row) for row in data]


def _interleaved_speakers(speaker_gender: dict[str, str | None], stratify: bool, rng: np.random.Generator) -> list[str]:
    """Order speakers so that every prefix holds the genders in about their overall proportion."""
    groups: dict[str, list[str]] = {}
    for speaker in sorted(speaker_gender):
        key = str(speaker_gender[speaker]) if stratify else ""
        groups.setdefault(key, []).append(speaker)
    group_rank = {key: rank for rank, key in enumerate(rng.permutation(sorted(groups)))}
    keyed = []
    for key, members in groups.items():
        members = list(rng.permutation(members))
        keyed += [((i + 0.5) / len(members), group_rank[key], str(spk)) for i, spk in enumerate(members)]
    return [speaker for _, _, speaker in sorted(keyed)]


def speaker_independent_split(
    dataset_or_rows,
    *,
    test_fraction: float,
    dev_fraction: float,
    seed: int,
    stratify_by_gender: bool = True,
) -> datasets.DatasetDict:
    """Assign whole speakers to train/dev/test; fractions count speakers, not utterances.

    With ``stratify_by_gender`` speakers are drawn alternately from each gender (in proportion), so
    small held-out sets stay gender-balanced. Every split with a positive fraction gets at least one
    speaker; train must keep at least one. Rows without a speaker are an error (they cannot be placed
    without risking leakage). Any existing ``split`` values are overwritten.
    """
    if test_fraction < 0 or dev_fraction < 0 or test_fraction + dev_fraction >= 1:
        raise ValueError(
            f"need 0 <= test_fraction, dev_fraction and their sum < 1; got test={test_fraction}, dev={dev_fraction}"
        )
    rows = _as_rows(dataset_or_rows)
    unknown = [str(row.get("id")) for row in rows if row.get("speaker") in (None, "")]
    if unknown:
        raise ValueError(
            f"{len(unknown)} rows have no speaker, so a speaker-independent split is impossible "
            f"(first ids: {', '.join(unknown[:10])})"
        )
    genders: dict[str, Counter] = {}
    for row in rows:
        genders.setdefault(str(row["speaker"]), Counter())[row.get("gender")] += 1
    speaker_gender = {spk: counts.most_common(1)[0][0] for spk, counts in genders.items()}

    order = _interleaved_speakers(speaker_gender, stratify_by_gender, np.random.default_rng(seed))
    n_speakers = len(order)
    n_test = max(round(test_fraction * n_speakers), 1 if test_fraction > 0 else 0)
    n_dev = max(round(dev_fraction * n_speakers), 1 if dev_fraction > 0 else 0)
    if n_test + n_dev >= n_speakers:
        raise ValueError(
            f"{n_speakers} speakers cannot fill {n_test} test + {n_dev} dev speakers and still leave one for training"
        )
    split_of = fixed_speaker_split(order[:n_test], order[n_test : n_test + n_dev])
    for row in rows:
        row["split"] = split_of(str(row["speaker"]))
    return order_splits(rows_to_dataset_dict(rows))
