"""Load your own corpus from a CSV/TSV/JSONL manifest with one row per utterance.

Columns are renamed to the schema with ``column_mapping`` ({your name: schema name}); columns that
already carry a schema name are used as they are, and every other column is ignored (logged once).
Empty cells are missing values (``None``). Without an ``id`` column the audio path as written in
the manifest is the id (unique by construction). Relative audio paths are resolved against
``audio_root``, else the manifest's folder. Without a ``split`` column every row is "train"
unless ``split=`` names the split for the whole file (it then overrides any column). Bad lines are
collected and raised together.

Soft labels: a ``label_distribution`` column (list, JSON list, or JSON object class -> share) or a
``label_votes`` column (per-class counts, same forms) gives each row its annotators' distribution,
aligned with ``labels`` (needed for the keyed forms and to derive a missing ``label``: the majority
class, none on a tie). See ``ser_hf.data.soft_labels``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping

import datasets

from ser_hf.data.schema import ATTRIBUTES, COLUMNS, rows_to_dataset_dict
from ser_hf.data.soft_labels import distribution_from_votes, majority_label, parse_distribution
from ser_hf.data.splits import order_splits
from ser_hf.data.validation import DataValidationError, format_problems

logger = logging.getLogger(__name__)

LABELS = None  # whatever the manifest uses; pass ``labels=`` to validation to check them
LABEL_NAMES: dict[str, str] = {}
ATTRIBUTE_RANGE = None

_DELIMITERS = {".csv": ",", ".tsv": "\t"}
SOFT_LABEL_COLUMNS = ("label_distribution", "label_votes")
_KNOWN = (*COLUMNS, *SOFT_LABEL_COLUMNS)
_JSON_LINES = (".jsonl", ".ndjson")


def iter_records(path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) from a .csv/.tsv (header row) or .jsonl/.ndjson file, streaming."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in _DELIMITERS and ext not in _JSON_LINES:
        raise ValueError(f"{path}: unsupported manifest type {ext!r}; use .csv, .tsv, .jsonl or .ndjson")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"manifest not found: {path}")
    with open(path, encoding="utf-8-sig", newline="") as handle:
        if ext in _DELIMITERS:
            reader = csv.DictReader(handle, delimiter=_DELIMITERS[ext])
            for record in reader:
                yield reader.line_num, record
            return
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {line_no}: invalid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise ValueError(f"{path}, line {line_no}: expected a JSON object, got {type(record).__name__}")
            yield line_no, record


def parse_attribute(value) -> float | None:
    """A dimensional rating as float; empty means missing. Raises ValueError for non-numbers."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{value!r} is not a number")
    return number


def _text(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _check_mapping(mapping: Mapping[str, str]) -> dict[str, str]:
    unknown = {src: dst for src, dst in mapping.items() if dst not in _KNOWN}
    if unknown:
        raise ValueError(f"column_mapping targets {unknown} are not schema columns {list(_KNOWN)}")
    targets = list(mapping.values())
    repeated = sorted({t for t in targets if targets.count(t) > 1})
    if repeated:
        raise ValueError(f"column_mapping maps several columns onto {repeated}")
    return dict(mapping)


def _sources(keys, mapping: dict[str, str]) -> dict[str, str]:
    """Schema column -> the manifest column that feeds it; error if two columns feed one."""
    sources: dict[str, str] = {}
    for key in keys:
        target = mapping.get(key, key if key in _KNOWN else None)
        if target is None:
            continue
        if target in sources:
            raise ValueError(
                f"columns {sources[target]!r} and {key!r} both provide {target!r}; drop one from the mapping"
            )
        sources[target] = key
    return sources


def load_manifest(
    path,
    *,
    column_mapping: Mapping[str, str] | None = None,
    audio_root=None,
    split: str | None = None,
    labels=None,
) -> datasets.DatasetDict:
    """Read a manifest into a DatasetDict in the common schema (audio stays a path; nothing is decoded).

    ``labels``: the class codes the soft-label columns are aligned with (see the module docstring)."""
    path = os.fspath(path)
    mapping = _check_mapping(column_mapping or {})
    base = os.path.abspath(os.fspath(audio_root) if audio_root is not None else os.path.dirname(os.path.abspath(path)))
    rows, errors, ignored, seen_keys = [], [], set(), set()
    cached_keys, sources = None, {}
    for line_no, record in iter_records(path):
        keys = tuple(record)
        if keys != cached_keys:  # CSV: once; JSONL: whenever a record's keys differ
            cached_keys, sources = keys, _sources(keys, mapping)
            seen_keys.update(keys)
            ignored.update(k for k in keys if k not in sources.values())
        value = {target: record.get(source) for target, source in sources.items()}
        row, problems = _row_from_record(value, base, split)
        _add_soft_label(row, value, labels, problems)
        if problems:
            errors.append(f"line {line_no}: {'; '.join(problems)}")
        else:
            rows.append(row)
    absent = sorted(set(mapping) - seen_keys)
    if absent:
        raise ValueError(f"{path}: column_mapping names columns {absent} that the manifest does not have")
    if errors:
        raise DataValidationError(format_problems(f"{path}: {len(errors)} bad lines:", errors), errors)
    if not rows:
        raise ValueError(f"{path}: manifest has no rows")
    if ignored:
        logger.info("%s: ignoring columns not in the schema: %s", path, sorted(ignored))
    return order_splits(rows_to_dataset_dict(rows))


def _row_from_record(value: dict, base: str, split: str | None) -> tuple[dict, list[str]]:
    problems = []
    audio = _text(value.get("audio"))
    if audio is None:
        problems.append("missing audio path")
        resolved = None
    else:
        resolved = os.path.normpath(os.path.join(base, os.path.expanduser(audio)))
    row = {
        "id": _text(value.get("id")) or audio,
        "audio": resolved,
        "transcript": _text(value.get("transcript")),
        "label": _text(value.get("label")),
        "speaker": _text(value.get("speaker")),
        "gender": _text(value.get("gender")),
    }
    for name in ATTRIBUTES:
        try:
            row[name] = parse_attribute(value.get(name))
        except (TypeError, ValueError):
            problems.append(f"{name} value {value.get(name)!r} is not a number")
    if split is not None:
        row["split"] = split
    elif "split" in value:
        row["split"] = _text(value["split"])
        if row["split"] is None:
            problems.append("empty split")
    else:
        row["split"] = "train"
    return row, problems


def _add_soft_label(row: dict, value: dict, labels, problems: list[str]) -> None:
    """Parse ``label_distribution`` / ``label_votes`` into ``row["label_distribution"]``."""
    given = [name for name in SOFT_LABEL_COLUMNS if _text(value.get(name)) is not None or isinstance(value.get(name), (list, dict))]
    if not given:
        return
    if len(given) == 2:
        problems.append("both label_distribution and label_votes are given; keep one")
        return
    labels = list(labels) if labels is not None else None
    try:
        if given[0] == "label_distribution":
            distribution = parse_distribution(value["label_distribution"], labels)
        else:
            distribution = distribution_from_votes(value["label_votes"], labels)
    except ValueError as exc:
        problems.append(str(exc))
        return
    row["label_distribution"] = distribution
    if row.get("label") is None:
        if labels is None:
            problems.append(f"{given[0]} without a label: pass labels (corpus_options) to derive the majority class")
        else:
            row["label"] = majority_label(distribution, labels)
    elif labels is not None and row["label"] not in labels:
        problems.append(f"label {row['label']!r} is not in the labels {labels} its {given[0]} is aligned with")
