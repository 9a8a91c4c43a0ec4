"""The one manifest schema every corpus loader returns.

Every row is one utterance. Missing values are ``None`` (a categorical-only corpus has no
attributes; EmoDB has no A/V/D; MSP-Podcast's O/X rows have no usable category).
"""
from __future__ import annotations

import datasets

ATTRIBUTES = ("arousal", "valence", "dominance")

COLUMNS = ("id", "audio", "transcript", "label", *ATTRIBUTES, "speaker", "gender", "split")

# Optional bookkeeping columns a loader may add, used by validation and removed before training:
SOURCE = "source"  # where the row came from, e.g. "data/train.csv, line 7" (named in every error)
INVALID = "invalid"  # reasons a line could not be read cleanly ("; "-joined); None for good rows
INVALID_SPLIT = "_unreadable"  # split of lines too broken to know their split (JSON that does not parse)
OPTIONAL_COLUMNS = (SOURCE, INVALID)

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "audio": datasets.Value("string"),  # path on disk; decoded lazily by ser_hf.data.audio
        "transcript": datasets.Value("string"),
        "label": datasets.Value("string"),  # class name, e.g. "H"; None when unlabelled
        "arousal": datasets.Value("float32"),
        "valence": datasets.Value("float32"),
        "dominance": datasets.Value("float32"),
        "speaker": datasets.Value("string"),
        "gender": datasets.Value("string"),
        "split": datasets.Value("string"),
    }
)


def rows_to_dataset(rows: list[dict]) -> datasets.Dataset:
    """Build a Dataset in the common schema from row dicts (missing keys become None).

    The optional ``source``/``invalid`` columns are kept when any row has them.
    """
    names = COLUMNS + tuple(name for name in OPTIONAL_COLUMNS if any(name in row for row in rows))
    columns = {name: [row.get(name) for row in rows] for name in names}
    features = datasets.Features({**FEATURES, **{name: datasets.Value("string") for name in names[len(COLUMNS):]}})
    return datasets.Dataset.from_dict(columns, features=features)


def rows_to_dataset_dict(rows: list[dict]) -> datasets.DatasetDict:
    """Group rows by their ``split`` value into a DatasetDict (keys in first-seen order)."""
    by_split: dict[str, list[dict]] = {}
    optional = {name for name in OPTIONAL_COLUMNS if any(name in row for row in rows)}
    for row in rows:
        if optional - set(row):  # every split gets the same optional columns
            row = {**{name: None for name in optional}, **row}
        by_split.setdefault(row["split"], []).append(row)
    return datasets.DatasetDict({name: rows_to_dataset(part) for name, part in by_split.items()})
