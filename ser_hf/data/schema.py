"""The one manifest schema every corpus loader returns.

Every row is one utterance. Missing values are ``None`` (a categorical-only corpus has no
attributes; EmoDB has no A/V/D; MSP-Podcast's O/X rows have no usable category).
"""
from __future__ import annotations

import datasets

ATTRIBUTES = ("arousal", "valence", "dominance")

COLUMNS = ("id", "audio", "transcript", "label", *ATTRIBUTES, "speaker", "gender", "split")

# Bookkeeping columns a loader may add (see OPTIONAL_FEATURES), used by validation, removed before training:
SOURCE = "source"  # where the row came from, e.g. "data/train.csv, line 7" (named in every error)
INVALID = "invalid"  # reasons a line could not be read cleanly ("; "-joined); None for good rows
INVALID_SPLIT = "_unreadable"  # split of lines too broken to know their split (JSON that does not parse)
BOOKKEEPING_COLUMNS = (SOURCE, INVALID)

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


# Optional columns: present only when a corpus provides them (every split then carries them, so
# splits still concatenate). ``label_distribution``: the annotators' class distribution, aligned
# with the corpus's label list (see ser_hf.data.soft_labels); None where a row has none. The
# bookkeeping columns (``source``, ``invalid``) come from loaders asked to keep bad lines.
OPTIONAL_FEATURES = {
    "label_distribution": datasets.Sequence(datasets.Value("float32")),
    SOURCE: datasets.Value("string"),
    INVALID: datasets.Value("string"),
}


def rows_to_dataset(rows: list[dict], optional: tuple[str, ...] | None = None) -> datasets.Dataset:
    """Build a Dataset in the common schema from row dicts (missing keys become None).

    Optional columns are kept when any row has a value (or when named in ``optional``)."""
    if optional is None:
        optional = tuple(name for name in OPTIONAL_FEATURES if any(row.get(name) is not None for row in rows))
    names = (*COLUMNS, *optional)
    columns = {name: [row.get(name) for row in rows] for name in names}
    features = datasets.Features({**FEATURES, **{name: OPTIONAL_FEATURES[name] for name in optional}})
    return datasets.Dataset.from_dict(columns, features=features)


def rows_to_dataset_dict(rows: list[dict]) -> datasets.DatasetDict:
    """Group rows by their ``split`` value into a DatasetDict (keys in first-seen order)."""
    by_split: dict[str, list[dict]] = {}
    for row in rows:
        by_split.setdefault(row["split"], []).append(row)
    optional = tuple(name for name in OPTIONAL_FEATURES if any(row.get(name) is not None for row in rows))
    return datasets.DatasetDict({name: rows_to_dataset(part, optional) for name, part in by_split.items()})


def column_values(dataset: datasets.Dataset, name: str) -> list:
    """Every value of one column as a list, read in one batch.

    Why: iterating ``dataset[name]`` (a lazy ``Column`` in datasets >= 4) formats row by row, about
    20 s per million rows; one slice reads the whole column in milliseconds.
    """
    values = dataset[name]
    return list(values[:]) if not isinstance(values, list) else values
