"""MSP-Podcast (the in-the-wild corpus of the paper's challenge) from its release layout.

Expected under ``root``: ``Labels/labels_consensus.csv``, ``Audios/<FileName>`` and optionally
``Transcripts/<stem>.txt``. Rows whose consensus class is O (other) or X (no agreement) keep their
A/V/D ratings but get ``label=None`` (pass ``exclude_classes=()`` to keep them as classes).
Gender is normalised to "M"/"F"; "Unknown" speaker or gender becomes ``None``.

Soft labels: when ``Labels/labels_detailed.csv`` (one row per annotator: FileName, Worker,
EmoClass_Major, EmoClass_Second, EmoAct, EmoVal, EmoDom) is present, every utterance's primary-emotion
votes (EmoClass_Major, full names such as "Angry" or codes such as "A"; "Other..." counts as O) become
``label_distribution`` over the loader's classes. Votes for an excluded class (O by default) are left
out and the rest renormalised; an utterance with no usable vote gets ``None``.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping

import datasets

from ser_hf.data.corpora.manifest import iter_records, parse_attribute
from ser_hf.data.schema import INVALID, INVALID_SPLIT, SOURCE, rows_to_dataset_dict
from ser_hf.data.splits import order_splits
from ser_hf.data.validation import DataValidationError, format_problems, read_text_file
from ser_hf.errors import DataError

logger = logging.getLogger(__name__)

LABELS = ("A", "S", "H", "U", "F", "D", "C", "N")
LABEL_NAMES = {
    "A": "angry",
    "S": "sad",
    "H": "happy",
    "U": "surprise",
    "F": "fear",
    "D": "disgust",
    "C": "contempt",
    "N": "neutral",
}
EXTRA_CLASSES = {"O": "other", "X": "no agreement"}
ATTRIBUTE_RANGE = (1.0, 7.0)

LABELS_FILE = os.path.join("Labels", "labels_consensus.csv")
DETAILED_FILE = os.path.join("Labels", "labels_detailed.csv")
DETAILED_COLUMNS = ("FileName", "EmoClass_Major")
_LONG_NAMES = {name: code for code, name in LABEL_NAMES.items()} | {"surprised": "U", "other": "O"}
DEFAULT_SPLITS = {"Train": "train", "Development": "dev", "Test1": "test", "Test2": "test2", "Test3": "test3"}
COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
_ATTRIBUTE_COLUMNS = {"arousal": "EmoAct", "valence": "EmoVal", "dominance": "EmoDom"}
_GENDERS = {"male": "M", "female": "F", "unknown": None, "": None}


def class_labels(exclude_classes=("O", "X")) -> tuple[str, ...]:
    """The label set a loader call produces: the 8 emotions plus any of O/X that are kept."""
    return LABELS + tuple(code for code in EXTRA_CLASSES if code not in exclude_classes)


def load_msp_podcast(
    root,
    *,
    exclude_classes=("O", "X"),
    splits: Mapping[str, str | None] | None = None,
    include_transcripts: bool = True,
    labels_file: str = LABELS_FILE,
    detailed_file: str | None = DETAILED_FILE,
    encoding: str = "utf-8",
    keep_invalid_rows: bool = False,
) -> datasets.DatasetDict:
    """Read the consensus labels into a DatasetDict; audio paths are stored, never opened.

    ``splits`` maps ``Split_Set`` values to split names (default: Train->train, Development->dev,
    Test1->test, Test2->test2, Test3->test3); mapping a set to ``None`` leaves it out on purpose.
    A set missing from the mapping is an error. Test3 rows without labels get ``None`` fields.
    ``detailed_file``: the per-annotator file turned into ``label_distribution`` when it exists
    (``None``: do not read it).
    ``encoding``: of the labels CSV and the transcripts (a file that does not decode is an error
    naming the file and line).
    ``keep_invalid_rows``: keep bad lines (their reasons in ``invalid``, the split ``INVALID_SPLIT`` when
    the split itself is unreadable) with a ``source`` column ("file, line N") instead of raising them
    together, so validation reports them beside every other row problem and ``--on_invalid_rows drop``
    can drop them (what the manifest loader does).
    """
    root = os.path.abspath(os.fspath(root))
    split_names = dict(DEFAULT_SPLITS if splits is None else splits)
    csv_path = os.path.join(root, labels_file)
    transcript_dir = os.path.join(root, "Transcripts")
    transcripts = set(os.listdir(transcript_dir)) if include_transcripts and os.path.isdir(transcript_dir) else set()
    if include_transcripts and not transcripts:
        logger.warning("%s: no transcripts found; transcript will be None", transcript_dir)

    votes = {}
    if detailed_file is not None and os.path.isfile(os.path.join(root, detailed_file)):
        votes = read_annotator_votes(os.path.join(root, detailed_file), class_labels(exclude_classes), encoding=encoding)
    rows, errors, unlabelled, left_out = [], [], Counter(), Counter()
    for line_no, record in iter_records(csv_path, encoding=encoding):
        if not rows and not errors and not left_out:  # first record: check the header once
            missing = [c for c in COLUMNS if c not in record]
            if missing:
                raise ValueError(f"{csv_path}: missing columns {missing} (expected {list(COLUMNS)})")
        file_name = (record["FileName"] or "").strip()
        split_set = (record["Split_Set"] or "").strip()
        problems = []
        if not file_name:
            problems.append("empty FileName")
        if split_set not in split_names:
            problems.append(f"Split_Set {split_set!r} not in the split mapping {sorted(split_names)}")
        code = (record["EmoClass"] or "").strip() or None
        if code is not None and code not in LABELS and code not in EXTRA_CLASSES:
            problems.append(f"unknown EmoClass {code!r}")
        row = {}
        for name, column in _ATTRIBUTE_COLUMNS.items():
            try:
                row[name] = parse_attribute(record[column])
            except ValueError:
                problems.append(f"{column} value {record[column]!r} is not a number")
        gender_text = (record["Gender"] or "").strip()
        where = f"{csv_path}, line {line_no}"
        if problems:
            errors.append(f"line {line_no} ({file_name or '?'}): {'; '.join(problems)}")
            if keep_invalid_rows:
                rows.append(_invalid_row(root, file_name, split_names.get(split_set), where, problems))
            continue
        if split_names[split_set] is None:
            left_out[split_set] += 1
            continue
        if code in exclude_classes:
            unlabelled[code] += 1
            code = None
        stem = os.path.splitext(file_name)[0]
        transcript = None
        if f"{stem}.txt" in transcripts:
            try:
                transcript = read_text_file(os.path.join(transcript_dir, f"{stem}.txt"), encoding).strip()
            except DataError as error:  # collected with the other bad lines, not raised alone
                errors.append(str(error))
                if keep_invalid_rows:
                    rows.append(_invalid_row(root, file_name, split_names[split_set], where, [str(error)]))
                continue
        speaker = (record["SpkrID"] or "").strip()
        row.update(
            id=stem,
            audio=os.path.join(root, "Audios", file_name),
            transcript=transcript,
            label=code,
            speaker=None if speaker.lower() in ("", "unknown") else speaker,
            gender=_GENDERS.get(gender_text.lower(), gender_text),
            split=split_names[split_set],
        )
        if votes:
            row["label_distribution"] = votes.get(file_name)
        if keep_invalid_rows:
            row[SOURCE] = where
        rows.append(row)
    if errors and not keep_invalid_rows:
        raise DataValidationError(format_problems(f"{csv_path}: {len(errors)} bad line{'s' if len(errors) != 1 else ''}:", errors), errors)
    if not rows:
        raise ValueError(f"{csv_path}: no rows left after the split mapping {split_names}")
    if unlabelled:
        logger.info(
            "MSP-Podcast: %s rows kept with label=None (classes %s)", sum(unlabelled.values()), dict(unlabelled)
        )
    if left_out:
        logger.info("MSP-Podcast: left out by the split mapping: %s", dict(left_out))
    return order_splits(rows_to_dataset_dict(rows))


def _invalid_row(root: str, file_name: str, split: str | None, where: str, problems: list[str]) -> dict:
    """A line kept for the validation report: as much of the row as is known, and why it is bad."""
    stem = os.path.splitext(file_name)[0] if file_name else None
    return {
        "id": stem,
        "audio": os.path.join(root, "Audios", file_name) if file_name else None,
        "split": split or INVALID_SPLIT,
        SOURCE: where,
        INVALID: "; ".join(problems),
    }


def _vote_code(text: str) -> str | None:
    """An EmoClass_Major entry as a class code ("Angry" / "A" -> "A"; "Other-xyz" -> "O"; empty -> None)."""
    text = (text or "").strip()
    if not text:
        return None
    if text in LABELS or text in EXTRA_CLASSES:
        return text
    key = text.lower()
    if key.startswith("other"):
        return "O"
    return _LONG_NAMES.get(key)


def read_annotator_votes(path: str, classes, encoding: str = "utf-8") -> dict[str, list[float]]:
    """FileName -> the annotators' primary-emotion distribution over ``classes`` (from labels_detailed.csv).

    Unknown class names are an error naming the line; votes for classes outside ``classes`` (e.g. O
    when it is excluded) are dropped and the rest renormalised; files with no usable vote are left out.
    """
    classes = list(classes)
    index = {code: i for i, code in enumerate(classes)}
    counts: dict[str, list[float]] = {}
    errors = []
    for line_no, record in iter_records(path, encoding=encoding):
        if not counts and not errors:
            missing = [c for c in DETAILED_COLUMNS if c not in record]
            if missing:
                raise ValueError(f"{path}: missing columns {missing} (expected at least {list(DETAILED_COLUMNS)})")
        file_name = (record["FileName"] or "").strip()
        code = _vote_code(record["EmoClass_Major"])
        if not file_name or (code is None and (record["EmoClass_Major"] or "").strip()):
            problem = "empty FileName" if not file_name else f"unknown EmoClass_Major {record['EmoClass_Major']!r}"
            errors.append(f"line {line_no}: {problem}")
            continue
        row = counts.setdefault(file_name, [0.0] * len(classes))
        if code in index:
            row[index[code]] += 1.0
    if errors:
        raise DataValidationError(format_problems(f"{path}: {len(errors)} bad lines:", errors), errors)
    return {name: [c / sum(row) for c in row] for name, row in counts.items() if sum(row) > 0}
