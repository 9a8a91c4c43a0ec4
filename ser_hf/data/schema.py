"""The one manifest schema every corpus loader returns.

Every row is one utterance. Missing values are ``None`` (a categorical-only corpus has no
attributes; EmoDB has no A/V/D; MSP-Podcast's O/X rows have no usable category).
"""
from __future__ import annotations

import datasets

ATTRIBUTES = ("arousal", "valence", "dominance")

COLUMNS = ("id", "audio", "transcript", "label", *ATTRIBUTES, "speaker", "gender", "split")

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
    """Build a Dataset in the common schema from row dicts (missing keys become None)."""
    columns = {name: [row.get(name) for row in rows] for name in COLUMNS}
    return datasets.Dataset.from_dict(columns, features=FEATURES)


def rows_to_dataset_dict(rows: list[dict]) -> datasets.DatasetDict:
    """Group rows by their ``split`` value into a DatasetDict (keys in first-seen order)."""
    by_split: dict[str, list[dict]] = {}
    for row in rows:
        by_split.setdefault(row["split"], []).append(row)
    return datasets.DatasetDict({name: rows_to_dataset(part) for name, part in by_split.items()})


def column_values(dataset: datasets.Dataset, name: str) -> list:
    """Every value of one column as a list, read in one batch.

    Why: iterating ``dataset[name]`` (a lazy ``Column`` in datasets >= 4) formats row by row, about
    20 s per million rows; one slice reads the whole column in milliseconds.
    """
    values = dataset[name]
    return list(values[:]) if not isinstance(values, list) else values
