"""Submission files of the MSP-Podcast SER challenge (Interspeech 2025).

Task 1 (categorical): ``FileName,EmoClass`` with the class code (A, S, H, U, F, D, C, N).
Task 2 (attributes): ``FileName,EmoAct,EmoVal,EmoDom`` on the corpus scale (1-7).
``FileName`` is the audio file's name as listed in the corpus labels (e.g. ``MSP-PODCAST_0002_0033.wav``),
so the organisers' scorer can join the file to its references. Values are checked before anything is
written, because a scorer rejects a whole file for one bad line.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

from ser_hf.io import write_csv_atomic

TASK1_COLUMNS = ("FileName", "EmoClass")
ATTRIBUTE_COLUMNS = {"arousal": "EmoAct", "valence": "EmoVal", "dominance": "EmoDom"}
TASK2_COLUMNS = ("FileName", *ATTRIBUTE_COLUMNS.values())

__all__ = [
    "ATTRIBUTE_COLUMNS",
    "TASK1_COLUMNS",
    "TASK2_COLUMNS",
    "submission_file_name",
    "write_task1_submission",
    "write_task2_submission",
]


def submission_file_name(row: Mapping) -> str:
    """The name a row is submitted under: its audio file's base name, else its id (text-only rows)."""
    audio = row.get("audio")
    if audio:
        return os.path.basename(audio)
    if row.get("id"):
        return str(row["id"])
    raise ValueError(f"row {dict(row)} has neither an audio path nor an id to name it in a submission")


def _check_names(file_names: Sequence[str], count: int, what: str) -> None:
    if len(file_names) != count:
        raise ValueError(f"{len(file_names)} file names for {count} {what}")
    if not file_names:
        raise ValueError("a submission needs at least one row")
    seen: set[str] = set()
    repeated = []
    for name in file_names:
        if not name:
            raise ValueError("a submission row has an empty FileName")
        if name in seen:
            repeated.append(name)
        seen.add(name)
    if repeated:
        raise ValueError(f"FileName must be unique; repeated: {sorted(set(repeated))[:10]}")


def write_task1_submission(path: str | os.PathLike, file_names: Sequence[str], classes: Sequence[str]) -> None:
    """Task 1 CSV: one predicted class code per file."""
    file_names, classes = list(file_names), list(classes)
    _check_names(file_names, len(classes), "classes")
    for name, code in zip(file_names, classes):
        if not code:
            raise ValueError(f"{name}: empty predicted class")
    write_csv_atomic(path, TASK1_COLUMNS, zip(file_names, classes))


def write_task2_submission(
    path: str | os.PathLike, file_names: Sequence[str], attributes: Mapping[str, Sequence[float]]
) -> None:
    """Task 2 CSV: arousal, valence and dominance per file (``attributes`` maps each name to its values)."""
    missing = sorted(set(ATTRIBUTE_COLUMNS) - set(attributes))
    if missing:
        raise ValueError(f"task 2 needs predictions for {missing}")
    file_names = list(file_names)
    columns = [list(attributes[name]) for name in ATTRIBUTE_COLUMNS]
    for name, values in zip(ATTRIBUTE_COLUMNS, columns):
        _check_names(file_names, len(values), f"{name} values")
        for file_name, value in zip(file_names, values):
            if not math.isfinite(float(value)):
                raise ValueError(f"{file_name}: {name} prediction {value!r} is not a finite number")
    rows = ([file_name, *(f"{float(v):.6f}" for v in values)] for file_name, *values in zip(file_names, *columns))
    write_csv_atomic(path, TASK2_COLUMNS, rows)
