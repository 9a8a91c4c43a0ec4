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


# Optional columns: present only when a corpus provides them (then in every split of it).
LABEL_DISTRIBUTION = "label_distribution"
OPTIONAL_FEATURES = {
    # Soft label: the raters' votes as a probability distribution over the corpus's class list
    # (the loader's ``labels``, same order), summing to 1; None where no rater vote falls in the class set.
    LABEL_DISTRIBUTION: datasets.Sequence(datasets.Value("float32")),
}


def _optional_columns(rows: list[dict]) -> list[str]:
    return [name for name in OPTIONAL_FEATURES if any(row.get(name) is not None for row in rows)]


def rows_to_dataset(rows: list[dict], optional: list[str] | None = None) -> datasets.Dataset:
    """Build a Dataset in the common schema from row dicts (missing keys become None).

    Optional columns (``OPTIONAL_FEATURES``) are added when named in ``optional`` or, by default,
    when any row has a value for them.
    """
    optional = _optional_columns(rows) if optional is None else list(optional)
    features = datasets.Features({**FEATURES, **{name: OPTIONAL_FEATURES[name] for name in optional}})
    columns = {name: [row.get(name) for row in rows] for name in features}
    return datasets.Dataset.from_dict(columns, features=features)


def rows_to_dataset_dict(rows: list[dict]) -> datasets.DatasetDict:
    """Group rows by their ``split`` value into a DatasetDict (keys in first-seen order); every
    split gets the same columns."""
    optional = _optional_columns(rows)
    by_split: dict[str, list[dict]] = {}
    for row in rows:
        by_split.setdefault(row["split"], []).append(row)
    return datasets.DatasetDict({name: rows_to_dataset(part, optional) for name, part in by_split.items()})
