"""Load your own corpus from a CSV/TSV/JSONL manifest with one row per utterance.

Columns are renamed to the schema with ``column_mapping`` ({your name: schema name}); columns that
already carry a schema name are used as they are, and every other column is ignored (logged once).
A column that differs from a schema name only by case or spacing (``Label``, ``Audio Path`` for
``audio_path``...) is an error with the mapping that fixes it, and so is a missing required column.
Empty cells are missing values (``None``). Without an ``id`` column the audio path as written in
the manifest is the id (unique by construction). Relative audio paths are resolved against
``audio_root``, else the manifest's folder. Without a ``split`` column every row is "train"
unless ``split=`` names the split for the whole file (it then overrides any column). The file is
read as ``encoding`` (UTF-8 by default); a line that does not decode is a bad line naming the byte.

Every row remembers where it came from (``source``: "file, line N"). Bad lines are collected, not
raised one by one: by default `load_manifest` raises them together; with ``keep_invalid_rows`` it
keeps them, with their reasons in the ``invalid`` column, so validation reports them alongside the
row problems it finds itself (and ``--on_invalid_rows drop`` drops them like any other bad row).

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
import re
from collections.abc import Iterator, Mapping

import datasets

from ser_hf.data import manifest_cache
from ser_hf.data.schema import ATTRIBUTES, COLUMNS, INVALID, INVALID_SPLIT, SOURCE, rows_to_dataset_dict
from ser_hf.data.soft_labels import distribution_from_votes, majority_label, parse_distribution
from ser_hf.data.splits import order_splits
from ser_hf.data.validation import DataValidationError, format_problems
from ser_hf.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

LABELS = None  # whatever the manifest uses; pass ``labels=`` to validation to check them
LABEL_NAMES: dict[str, str] = {}
ATTRIBUTE_RANGE = None

_DELIMITERS = {".csv": ",", ".tsv": "\t"}
SOFT_LABEL_COLUMNS = ("label_distribution", "label_votes")
_KNOWN = (*COLUMNS, *SOFT_LABEL_COLUMNS)
_JSON_LINES = (".jsonl", ".ndjson")
_AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".sph", ".webm")
# Words in a column name that suggest which schema column it is (for the mapping hint of an error).
_NAME_HINTS = {
    "audio": ("audio", "path", "file", "wav", "filename"),
    "label": ("emotion", "emo", "label", "class", "category", "categorical"),
    "transcript": ("transcript", "text", "sentence", "utterance", "words"),
    "arousal": ("arousal", "activation", "act"),
    "valence": ("valence", "val"),
    "dominance": ("dominance", "dom"),
    "id": ("id", "name", "key", "utt"),
    "speaker": ("speaker", "spk", "spkr"),
}


def _normalised(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(name)).lower()


def mapping_hint(mapping: Mapping[str, str]) -> str:
    """How to write ``mapping`` as a corpus option, in the YAML and on the command line."""
    pairs = ", ".join(f"{json.dumps(src)}: {json.dumps(dst)}" for src, dst in mapping.items())
    return (
        f"in the YAML config:\n    corpus_options:\n      column_mapping: {{{pairs}}}\n"
        f"  or on the command line: --corpus_options '{{\"column_mapping\": {{{pairs}}}}}'"
    )


def _undecodable(value: str) -> int | None:
    """The first byte that failed to decode (kept as a surrogate by ``surrogateescape``), or None."""
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        return ord(value[error.start]) - 0xDC00
    return None


def _encoding_problem(record: dict, encoding: str) -> str | None:
    for key, value in record.items():
        if isinstance(value, str) and (byte := _undecodable(value)) is not None:
            column = f" in column {key!r}" if isinstance(key, str) else ""
            return (
                f"not valid {encoding} text{column} (byte 0x{byte:02x}); if the file uses another encoding, set "
                f"corpus_options: {{encoding: latin-1}} (or whichever it is), or re-save the file as UTF-8"
            )
    return None


def iter_records(path, *, encoding: str = "utf-8") -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) from a .csv/.tsv (header row) or .jsonl/.ndjson file, streaming.

    Strict: the first undecodable, malformed or misshapen line raises a `DataError` naming the file
    and line. (`load_manifest` reads leniently, collecting every bad line instead.)
    """
    for line_no, record, problem in _read_lines(path, encoding):
        if problem:
            raise DataError(f"{os.fspath(path)}, line {line_no}: {problem}")
        yield line_no, record


def _check_path(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in _DELIMITERS and ext not in _JSON_LINES:
        raise ConfigError(f"{path}: unsupported manifest type {ext!r}; use .csv, .tsv, .jsonl or .ndjson")
    if not os.path.isfile(path):
        raise DataError(f"manifest not found: {path}")
    return ext


def _read_lines(path, encoding: str, meta: dict | None = None) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, record or None, problem or None) for every non-blank record of the file.

    ``meta`` (optional) receives ``header_line`` for CSV/TSV files.
    """
    path = os.fspath(path)
    ext = _check_path(path)
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # tolerate a byte-order mark
    shown = "utf-8" if encoding == "utf-8-sig" else encoding
    try:
        handle = open(path, encoding=encoding, errors="surrogateescape", newline="")
    except LookupError:
        raise ConfigError(f"unknown encoding {encoding!r} (corpus_options.encoding); e.g. utf-8, latin-1, cp1252") from None
    with handle:
        if ext in _DELIMITERS:
            yield from _read_delimited(handle, _DELIMITERS[ext], shown, path, {} if meta is None else meta)
            return
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if _undecodable(line) is not None:
                yield line_no, None, _encoding_problem({None: line}, shown)
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield line_no, None, f"invalid JSON ({exc.msg}, column {exc.colno})"
                continue
            if not isinstance(record, dict):
                yield line_no, None, f"expected a JSON object, got {type(record).__name__}"
                continue
            yield line_no, record, None


def _read_delimited(handle, delimiter: str, encoding: str, path: str, meta: dict):
    reader = csv.reader(handle, delimiter=delimiter)
    header = None
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if header is None:
                raise DataError(f"{path}, line {reader.line_num}: the header row is not valid CSV ({exc})") from None
            yield reader.line_num, None, f"not valid CSV ({exc})"
            continue
        if header is None:
            if not any(cell.strip() for cell in cells):
                continue
            if _undecodable("".join(cells)) is not None:
                raise DataError(
                    f"{path}, line {reader.line_num}: header is {_encoding_problem({None: ''.join(cells)}, encoding)}"
                )
            header = cells
            meta["header_line"], meta["header"] = reader.line_num, list(cells)
            _check_header(path, header)
            continue
        line_no = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        record = {name: cells[i] if i < len(cells) else None for i, name in enumerate(header)}
        problem = _encoding_problem(record, encoding)
        if len(cells) != len(header):
            shape = f"{len(cells)} fields but the header has {len(header)}"
            hint = " (an unquoted delimiter inside a value?)" if len(cells) > len(header) else ""
            problem = f"{shape}{hint}" + (f"; {problem}" if problem else "")
        yield line_no, record, problem


def _check_header(path: str, header: list[str]) -> None:
    names = [name.strip() for name in header]
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        raise DataError(f"{path}, line 1: the header repeats column(s) {repeated}; give every column its own name")


def parse_attribute(value) -> float | None:
    """A dimensional rating as float; empty means missing. Raises ValueError for non-numbers."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a number")
    return number


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise TypeError(f"expected text, got a JSON {'object' if isinstance(value, dict) else 'list'}")
    text = str(value).strip()
    if not text.isascii() and _undecodable(text) is not None:  # a bad line kept for the report: show U+FFFD
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text or None


def _check_mapping(mapping: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"column_mapping must be a mapping {{your column: schema column}}, got {mapping!r}")
    unknown = {src: dst for src, dst in mapping.items() if dst not in _KNOWN}
    if unknown:
        raise ConfigError(f"column_mapping targets {unknown} are not schema columns {list(_KNOWN)}")
    targets = list(mapping.values())
    repeated = sorted({t for t in targets if targets.count(t) > 1})
    if repeated:
        raise ConfigError(f"column_mapping maps several columns onto {repeated}")
    return dict(mapping)


def _sources(keys, mapping: dict[str, str]) -> dict[str, str]:
    """Schema column -> the manifest column that feeds it; error if two columns feed one."""
    sources: dict[str, str] = {}
    for key in keys:
        target = mapping.get(key, key if key in _KNOWN else None)
        if target is None:
            continue
        if target in sources:
            raise ConfigError(
                f"columns {sources[target]!r} and {key!r} both provide {target!r}; drop one from the mapping"
            )
        sources[target] = key
    return sources


def _guess_column(target: str, candidates: list[str], samples: dict[str, list]) -> str | None:
    """The manifest column most likely meant as schema column ``target`` (for an error's hint)."""
    if target == "audio":
        for name in candidates:
            values = [str(v).strip().lower() for v in samples.get(name, []) if v not in (None, "")]
            if values and all(v.endswith(_AUDIO_EXTENSIONS) for v in values):
                return name
    hints = _NAME_HINTS.get(target, (target,))
    for hint in hints:
        for name in candidates:
            if _normalised(name) == hint:
                return name
    for hint in hints:
        for name in candidates:
            if hint in _normalised(name):
                return name
    return None


def _column_problems(
    where: str, keys: list[str], sources: dict[str, str], required, samples: dict[str, list]
) -> list[str]:
    """Header problems: near-miss column names and missing required columns, with the fixing mapping."""
    unused = [key for key in keys if isinstance(key, str) and key not in sources.values()]
    problems, mapping = [], {}
    for key in unused:
        for column in COLUMNS:
            if column not in sources and _normalised(key) == _normalised(column) and key != column:
                problems.append(f"column {key!r} differs from the schema column {column!r} only by case or spacing")
                mapping[key] = column
    missing = [c for c in required if c not in sources and c not in mapping.values()]
    for column in missing:
        guess = _guess_column(column, [k for k in unused if k not in mapping], samples)
        mapping[guess or f"YOUR_{column.upper()}_COLUMN"] = column
        problems.append(f"no column provides {column!r} (required)")
    if not problems:
        return []
    found = ", ".join(repr(k) for k in keys if isinstance(k, str))
    return [
        f"{where}: " + "; ".join(problems) + f".\n  Columns found: {found}.\n"
        f"  Rename the column(s) in the file, or map them to the schema {mapping_hint(mapping)}"
    ]


def load_manifest(
    path,
    *,
    column_mapping: Mapping[str, str] | None = None,
    audio_root=None,
    split: str | None = None,
    encoding: str = "utf-8",
    required_columns=("audio",),
    keep_invalid_rows: bool = False,
    labels=None,
) -> datasets.DatasetDict:
    """Read a manifest into a DatasetDict in the common schema (audio stays a path; nothing is decoded).

    ``required_columns``: schema columns some manifest column must provide, and every row must
    fill for ``audio`` (the pipeline asks for ``label`` in categorical runs, ``transcript`` instead of
    ``audio`` in text runs...). ``keep_invalid_rows``: keep bad
    lines (``invalid`` holds their reasons; lines that could not be parsed at all go to the split
    ``INVALID_SPLIT``) instead of raising them, and add the ``source`` column ("file, line N") so
    validation names rows by line. ``labels``: the class codes the soft-label columns are aligned
    with (see the module docstring).
    """
    path = os.fspath(path)
    mapping = _check_mapping(column_mapping or {})
    base = os.path.abspath(os.fspath(audio_root) if audio_root is not None else os.path.dirname(os.path.abspath(path)))
    required = [c for c in dict.fromkeys(required_columns) if c in COLUMNS]
    _check_path(path)
    options = {"column_mapping": mapping, "base": base, "split": split, "encoding": encoding, "required": required,
               "keep_invalid_rows": keep_invalid_rows, "labels": list(labels) if labels is not None else None}
    cache_id = manifest_cache.cache_key(path, options)
    cached = manifest_cache.load(cache_id)
    if cached is not None:  # parsed before, same file and options (see ser_hf.data.manifest_cache)
        corpus, extra = cached
        if extra.get("ignored"):
            logger.info("%s: ignoring columns not in the schema: %s", path, extra["ignored"])
        return corpus
    rows, errors, ignored, seen_keys = [], [], set(), []
    cached_keys, sources, samples, first_line, meta = None, {}, {}, None, {}
    for line_no, record, problem in _read_lines(path, encoding, meta):
        where = f"{path}, line {line_no}"
        first_line = first_line or line_no
        if record is None:
            errors.append(f"{where}: {problem}")
            rows.append({"id": None, "audio": None, "split": INVALID_SPLIT, SOURCE: where, INVALID: problem})
            continue
        keys = tuple(k for k in record if isinstance(k, str))
        if keys != cached_keys:  # CSV: once; JSONL: whenever a record's keys differ
            cached_keys, sources = keys, _sources(keys, mapping)
            seen_keys.extend(k for k in keys if k not in seen_keys)
            ignored.update(k for k in keys if k not in sources.values())
        for key in keys:
            if len(samples.setdefault(key, [])) < 20:
                samples[key].append(record[key])
        value = {target: record.get(source) for target, source in sources.items()}
        row, problems = _row_from_record(value, base, split, need_audio="audio" in required)
        _add_soft_label(row, value, labels, problems)
        if problem:
            problems.insert(0, problem)
        row[SOURCE] = where
        if problems:
            errors.append(f"{where}: {'; '.join(problems)}")
            row[INVALID] = "; ".join(problems)
            if row["split"] is None:
                row["split"] = INVALID_SPLIT
        rows.append(row)
    if "header" in meta:  # CSV/TSV: the header says which columns there are, rows or not
        seen_keys = list(dict.fromkeys(meta["header"]))
    absent = sorted(set(mapping) - set(seen_keys))
    if absent:
        raise ConfigError(
            f"{path}: column_mapping names columns {absent} that the manifest does not have "
            f"(columns found: {', '.join(map(repr, seen_keys))})"
        )
    if not rows:
        raise DataError(f"{path}: manifest has no rows")
    all_sources = _sources(seen_keys, mapping)
    if "header_line" in meta:
        where = f"{path}, line {meta['header_line']} (the header)"
    else:
        where = f"{path}, line {first_line}" if first_line else path
    # (no keys at all: no line parsed into a record; those lines are reported as bad rows instead)
    header_problems = _column_problems(where, seen_keys, all_sources, required, samples) if seen_keys else []
    if header_problems:
        raise DataError("\n".join(header_problems))
    if errors and not keep_invalid_rows:
        raise DataValidationError(format_problems(f"{path}: {len(errors)} bad line{'s' if len(errors) != 1 else ''}:", errors), errors)
    if ignored:
        logger.info("%s: ignoring columns not in the schema: %s", path, sorted(ignored))
    if not keep_invalid_rows:  # the plain schema; the bookkeeping columns are for validation
        rows = [{k: v for k, v in row.items() if k != SOURCE} for row in rows]
    corpus = order_splits(rows_to_dataset_dict(rows))
    manifest_cache.save(cache_id, corpus, {"ignored": sorted(ignored)})
    return corpus


def _row_from_record(value: dict, base: str, split: str | None, need_audio: bool = True) -> tuple[dict, list[str]]:
    problems = []
    texts = {}
    for name in ("id", "audio", "transcript", "label", "speaker", "gender", "split"):
        try:
            texts[name] = _text(value.get(name))
        except TypeError as exc:
            problems.append(f"{name}: {exc}")
            texts[name] = None
    audio = texts["audio"]
    if audio is None:
        if need_audio:
            problems.append("missing audio path")
        resolved = None
    else:
        resolved = os.path.normpath(os.path.join(base, os.path.expanduser(audio)))
    row = {
        "id": texts["id"] or audio,
        "audio": resolved,
        "transcript": texts["transcript"],
        "label": texts["label"],
        "speaker": texts["speaker"],
        "gender": texts["gender"],
    }
    for name in ATTRIBUTES:
        try:
            row[name] = parse_attribute(value.get(name))
        except (TypeError, ValueError):
            problems.append(f"{name} value {value.get(name)!r} is not a number")
    if split is not None:
        row["split"] = split
    elif "split" in value:
        row["split"] = texts["split"]
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
