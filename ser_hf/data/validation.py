"""Check a manifest before training: one pass that reports every bad row at once.

Finding one bad file per multi-hour run is the failure this prevents, so nothing stops at the
first problem: each row collects all its reasons (including the parse problems a loader kept in
the ``invalid`` column) and the report lists them together, each named by the user's file and
line when the loader recorded it (``source``), else by split and position. Audio is probed from
the header plus a tiny read (``probe_audio``); only ``scan_audio`` decodes whole files (once), to
warn about silent or clipped recordings.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
import os
from dataclasses import dataclass, field
from typing import NamedTuple

import datasets
import numpy as np
import soundfile as sf

from ser_hf.data.audio import AudioError, AudioInfo, describe_audio, probe_audio
from ser_hf.data.durations import HeaderFacts, cached_headers, default_cache_path
from ser_hf.data.schema import ATTRIBUTES, COLUMNS, INVALID, SOURCE, column_values
from ser_hf.errors import DataError

logger = logging.getLogger(__name__)

_SINGLE = "dataset"  # split name used when a bare Dataset (not a DatasetDict) is validated
SILENCE_PEAK = 1e-4  # peak amplitude below this (-80 dBFS) counts as silence
CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipped ...
CLIP_FRACTION = 1e-3  # ... and a file with more than this fraction of such samples is "clipped"
WARNING_EXAMPLES = 10  # locations listed per kind of warning


class DataValidationError(DataError):
    """Raised with a message that lists every bad row (or line) found, one per line."""

    def __init__(self, message: str, problems: list | tuple = ()):
        super().__init__(message)
        self.problems = list(problems)


def read_text_file(path: str, encoding: str = "utf-8") -> str:
    """A whole text file (a transcript); a byte that does not decode is a `DataError` naming file and line."""
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        return raw.decode("utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding)
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path}, line {line}: not valid {encoding} text (byte 0x{raw[error.start]:02x}); if the files use another "
            f"encoding, set corpus_options: {{encoding: latin-1}} (or whichever it is), or re-save them as UTF-8"
        ) from None
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r} (corpus_options.encoding); e.g. utf-8, latin-1") from None


def format_problems(header: str, lines: list[str], limit: int = 50) -> str:
    """``header`` then one line per problem, truncated after ``limit`` with a count of the rest."""
    shown = [f"  {line}" for line in lines[:limit]]
    if len(lines) > limit:
        shown.append(f"  ... and {len(lines) - limit} more")
    return "\n".join([header, *shown])


@dataclass(frozen=True)
class RowProblem:
    split: str
    index: int
    id: str | None
    audio: str | None
    reasons: tuple[str, ...]
    source: str | None = None  # "file, line N" when the loader recorded it

    @property
    def location(self) -> str:
        return self.source or f"{self.split}[{self.index}]"

    def __str__(self) -> str:
        return f"{self.location}, id {self.id!r}: {'; '.join(self.reasons)}"


@dataclass
class ValidationReport:
    n_rows: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    # problems of the data as a whole (a class without training rows, an empty split): not droppable
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # seconds per row and split (None where unreadable or not checked); free once headers are read
    durations: dict[str, list[float | None]] = field(default_factory=dict)
    # rows per (split, label) among rows without problems, and the first row's location of each
    label_counts: dict[str, Counter] = field(default_factory=dict)
    header_cache: str | None = None  # the audio header cache the probe read and refreshed (None: no files probed)
    label_examples: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.errors

    def bad_indices(self) -> dict[str, set[int]]:
        bad: dict[str, set[int]] = {}
        for problem in self.problems:
            bad.setdefault(problem.split, set()).add(problem.index)
        return bad

    def format(self, limit: int = 50) -> str:
        """The errors (first) and the bad rows, one per line, under a one-line summary."""
        footer = (
            "Fix these rows, or train without them with --on_invalid_rows drop "
            "(the dropped rows are then listed in <output_dir>/dropped_rows.csv)."
        )
        if self.errors and not self.problems and len(self.errors) == 1:
            return self.errors[0]
        if len(self.problems) == 1 and not self.errors:  # one bad row: say it on the first line
            return f"{self.problems[0]}\n(1 of {self.n_rows} rows failed validation.) {footer.replace('these rows', 'this row').replace('without them', 'without it')}"
        parts = []
        if self.problems:
            parts.append(f"{len(self.problems)} of {self.n_rows} rows failed validation")
        if self.errors:
            parts.append(f"{len(self.errors)} problem{'s' if len(self.errors) > 1 else ''} with the data as a whole")
        lines = list(self.errors) + [str(p) for p in self.problems]
        text = format_problems(" and ".join(parts) + ":", lines, limit + len(self.errors))
        if self.problems:
            text += "\n" + footer
        return text

    def format_warnings(self) -> str:
        return format_problems(f"{len(self.warnings)} warning(s):", self.warnings, len(self.warnings))

    def raise_if_errors(self, limit: int = 50) -> None:
        if not self.ok:
            raise DataValidationError(self.format(limit), self.problems or self.errors)

    def add_warning(self, count: int, what: str, locations: list[str]) -> None:
        """One counted warning listing up to ``WARNING_EXAMPLES`` row locations."""
        shown = "; ".join(locations[:WARNING_EXAMPLES])
        more = f"; ... and {len(locations) - WARNING_EXAMPLES} more" if len(locations) > WARNING_EXAMPLES else ""
        self.warnings.append(f"{count} row{'s' if count != 1 else ''}: {what} ({shown}{more})")


def _as_dict(ds_or_dict) -> tuple[dict[str, datasets.Dataset], bool]:
    if isinstance(ds_or_dict, datasets.Dataset):
        return {_SINGLE: ds_or_dict}, True
    return dict(ds_or_dict), False


def _attribute_reasons(row: dict, attribute_range, require_attributes: bool) -> list[str]:
    reasons = []
    for name in ATTRIBUTES:
        value = row.get(name)
        if value is None:
            if require_attributes:
                reasons.append(f"missing {name}")
        elif math.isnan(value):
            reasons.append(f"{name} is NaN")
        elif attribute_range is not None and not attribute_range[0] <= value <= attribute_range[1]:
            reasons.append(f"{name}={value:g} outside [{attribute_range[0]:g}, {attribute_range[1]:g}]")
    return reasons


class _AudioFacts(NamedTuple):  # a tuple: 270k of them are made in one pass
    info: AudioInfo | None = None
    reason: str | None = None
    peak: float | None = None  # only with a content scan
    clipped_fraction: float | None = None


def _scan(path: str) -> tuple[float, float] | None:
    """(peak, fraction of frames at full scale) of the whole file, read in blocks; None when
    libsndfile cannot open it (formats decoded by librosa at training time are not scanned)."""
    if not isinstance(path, (str, os.PathLike)):  # bytes / decoded arrays of a datasets input: not scanned
        return None
    try:
        handle = sf.SoundFile(path)
    except sf.LibsndfileError:
        return None
    peak, clipped = 0.0, 0
    with handle:
        for block in handle.blocks(blocksize=1 << 20, dtype="float32", always_2d=True):
            magnitude = np.abs(block)
            peak = max(peak, float(magnitude.max(initial=0.0)))
            clipped += int((magnitude >= CLIP_LEVEL).any(axis=1).sum())
        return peak, clipped / max(handle.frames, 1)


def _audio_check(path, scan: bool = False) -> _AudioFacts:
    try:
        info = probe_audio(path or "")
    except AudioError as exc:
        return _AudioFacts(reason=f"{exc.reason}: {describe_audio(path)}" if path else exc.reason)
    except OSError as exc:  # e.g. permission denied
        return _AudioFacts(reason=f"unreadable audio ({exc}): {describe_audio(path)}")
    if not scan:
        return _AudioFacts(info)
    try:
        stats = _scan(path)
    except (sf.LibsndfileError, RuntimeError) as exc:  # the header was fine, the data is not
        return _AudioFacts(info, f"corrupt audio data ({exc}): {describe_audio(path)}")
    return _AudioFacts(info) if stats is None else _AudioFacts(info, None, *stats)


def _probe_facts(path) -> HeaderFacts:
    """Validation's probe of one file as cacheable header facts (the message is the report's)."""
    try:
        info = probe_audio(path or "")
    except AudioError as exc:
        return HeaderFacts(error=f"{exc.reason}: {describe_audio(path)}" if path else exc.reason)
    except OSError as exc:  # e.g. permission denied: looked at again next time
        return HeaderFacts(error=f"unreadable audio ({exc}): {describe_audio(path)}", cacheable=False)
    return HeaderFacts(info.frames, info.samplerate, info.channels)


@dataclass
class _AudioColumns:
    """Every row's audio facts as columns (no object per row: 270k rows in one pass). ``reason`` is
    None for a readable file; ``frames``/``rate`` are 0 where nothing was read."""

    reason: list
    frames: list
    rate: list
    peak: list
    clipped: list

    @classmethod
    def unchecked(cls, n: int) -> "_AudioColumns":
        return cls([None] * n, [0] * n, [0] * n, [None] * n, [None] * n)


def _audio_facts(
    sources: list, *, scan: bool, pool: ThreadPoolExecutor, threads: int, cache: dict, progress: bool | None
) -> _AudioColumns:
    """Every row's audio facts: file paths through the shared header cache (`ser_hf.data.durations`),
    other sources (bytes, decoded arrays of a `datasets` input) probed directly; ``scan`` then decodes
    the readable files (never cached)."""
    out = _AudioColumns.unchecked(len(sources))
    files = [i for i, source in enumerate(sources) if isinstance(source, str) and source]
    if len(files) == len(sources):
        headers = cached_headers(sources, _probe_facts, probed=True, num_threads=threads, progress=progress,
                                 desc="probing audio files", **cache)
        out.reason, out.frames, out.rate = headers.errors, headers.frames.tolist(), headers.samplerate.tolist()
    elif files:
        headers = cached_headers([sources[i] for i in files], _probe_facts, probed=True, num_threads=threads,
                                 progress=progress, desc="probing audio files", **cache)
        for k, i in enumerate(files):
            out.reason[i], out.frames[i], out.rate[i] = headers.errors[k], int(headers.frames[k]), int(headers.samplerate[k])
    listed = set(files)
    others = [i for i in range(len(sources)) if i not in listed]
    for i, fact in zip(others, pool.map(lambda k: _audio_check(sources[k]), others)):
        out.reason[i] = fact.reason
        if fact.info is not None:
            out.frames[i], out.rate[i] = fact.info.frames, fact.info.samplerate
    if scan:
        readable = [i for i, reason in enumerate(out.reason) if reason is None]

        def scanned(k: int):
            try:
                return None, _scan(sources[k])
            except (sf.LibsndfileError, RuntimeError) as exc:  # the header was fine, the data is not
                return f"corrupt audio data ({exc}): {describe_audio(sources[k])}", None

        for i, (reason, stats) in zip(readable, pool.map(scanned, readable)):
            out.reason[i] = reason
            if stats is not None:
                out.peak[i], out.clipped[i] = stats
    return out


def validate_dataset(
    ds_or_dict,
    *,
    labels=None,
    attribute_range: tuple[float, float] | None = None,
    require_label: bool = False,
    require_attributes: bool = False,
    require_transcript: bool = False,
    sampling_rate: int | None = None,
    max_seconds: float | None = None,
    check_audio: bool = True,
    scan_audio: bool = False,
    progress: bool | None = None,
    num_threads: int = 4,
    cache_path: str | None = None,
    trust_cache: bool = False,
    write_cache: bool = True,
) -> ValidationReport:
    """Check every row of a Dataset/DatasetDict in the common schema; never raises for bad rows.

    Reported per row: problems the loader kept (``invalid``), missing/unreadable/empty/corrupt
    audio, label not in ``labels``, attribute NaN or outside the inclusive ``attribute_range``,
    duplicate id (across splits; later copies are the bad ones), missing label/attributes/transcript
    when required. Warnings (counted, with the rows listed): files stored below ``sampling_rate``
    (they will be upsampled, which adds no information), files longer than ``max_seconds`` (only a
    crop of them is used per step), and with ``scan_audio`` (one full decode per file) all-silent
    and clipped files. ``progress``: tqdm bar on/off; ``None`` shows it only on a terminal. Audio is
    read by ``num_threads`` threads because the work is file I/O (slow on network disks).

    Audio files are probed through the header cache shared with length grouping
    (`ser_hf.data.durations`; ``cache_path``, ``trust_cache`` and ``write_cache`` as there): a second
    launch only ``stat``s unchanged files and reports the problems the first launch found.
    """
    splits, _ = _as_dict(ds_or_dict)
    for split, ds in splits.items():
        missing = [c for c in COLUMNS if c not in ds.column_names]
        if missing:
            raise ValueError(f"split {split!r} lacks schema columns {missing}; build it with ser_hf.data.schema")
    allowed = None if labels is None else set(labels)
    report = ValidationReport(n_rows=sum(len(ds) for ds in splits.values()))
    seen_ids: dict[str, str] = {}
    notes: dict[str, list[str]] = {}  # warning kind -> row locations
    cache = {"cache_path": cache_path, "trust_cache": trust_cache, "write_cache": write_cache}
    columns = {split: {name: column_values(ds, name) if name in ds.column_names else [None] * len(ds)
                       for name in (*COLUMNS, SOURCE, INVALID)} for split, ds in splits.items()}
    with ThreadPoolExecutor(max(1, num_threads)) as pool:
        every_audio = [value for column in columns.values() for value in column["audio"]]
        files = [value for value in every_audio if isinstance(value, str) and value]
        if check_audio and files and not cache_path:  # one table for all splits; length grouping reads it too
            cache["cache_path"] = default_cache_path(files)
        report.header_cache = cache["cache_path"] if check_audio and files else None
        facts = (_audio_facts(every_audio, scan=scan_audio, pool=pool, threads=max(1, num_threads), cache=cache,
                              progress=progress)
                 if check_audio else _AudioColumns.unchecked(len(every_audio)))
    offset = 0
    for split, ds in splits.items():
        durations = report.durations.setdefault(split, [])
        counts = report.label_counts.setdefault(split, Counter())
        n = len(ds)
        column = columns[split]
        audio = column["audio"]
        attributes = [column[name] for name in ATTRIBUTES]
        check_attributes = require_attributes or any(v is not None for a in attributes for v in a)
        for index, row in enumerate(range(offset, offset + n)):  # row: the position in ``facts``
            source = column[SOURCE][index]
            where = source or f"{split}[{index}]"
            parse_reasons = [r for r in (column[INVALID][index] or "").split("; ") if r]
            reasons = list(parse_reasons)
            row_id = column["id"][index]
            if row_id in (None, ""):
                if not parse_reasons:
                    reasons.append("missing id")
            elif row_id in seen_ids:
                reasons.append(f"duplicate id (first seen at {seen_ids[row_id]})")
            else:
                seen_ids[row_id] = where
            label = column["label"][index]
            if label is None:
                if require_label:
                    reasons.append("missing label")
            elif allowed is not None and label not in allowed:
                reasons.append(f"unknown label {label!r} (expected one of {sorted(allowed)})")
            if check_attributes and (require_attributes or any(a[index] is not None for a in attributes)):
                reasons += _attribute_reasons({name: a[index] for name, a in zip(ATTRIBUTES, attributes)},
                                              attribute_range, require_attributes)
            if require_transcript and not (column["transcript"][index] or "").strip():
                reasons.append("missing or empty transcript (a text model reads it)")
            reason, rate = facts.reason[row], facts.rate[row]
            if reason and not (audio[index] is None and parse_reasons):
                reasons.append(reason)
            seconds = facts.frames[row] / rate if rate and reason is None else None
            if seconds is not None:
                if sampling_rate is not None and rate < sampling_rate:
                    notes.setdefault("low_rate", []).append(f"{where} ({rate} Hz)")
                if max_seconds is not None and seconds > max_seconds:
                    notes.setdefault("long", []).append(f"{where} ({seconds:.1f} s)")
                peak, clipped = facts.peak[row], facts.clipped[row]
                if peak is not None and peak < SILENCE_PEAK:
                    notes.setdefault("silent", []).append(where)
                elif clipped is not None and clipped > CLIP_FRACTION:
                    notes.setdefault("clipped", []).append(f"{where} ({100 * clipped:.1f}%)")
            durations.append(seconds)
            if reasons:
                report.problems.append(
                    RowProblem(split, index, row_id, describe_audio(audio[index]), tuple(reasons), source)
                )
            elif label is not None:
                counts[label] += 1
                report.label_examples.setdefault((split, label), where)
        offset += n
    texts = {
        "low_rate": f"audio stored below {sampling_rate} Hz, the model's rate; it will be upsampled (adds no information)",
        "long": f"audio longer than the {max_seconds:g} s crop; each step sees one crop of it" if max_seconds else "",
        "silent": "audio is all silence (peak below -80 dBFS); check the file or drop the row",
        "clipped": f"audio is clipped (over {100 * CLIP_FRACTION:g}% of samples at full scale)",
    }
    for kind, locations in notes.items():
        report.add_warning(len(locations), texts[kind], locations)
    for warning in report.warnings:
        logger.warning(warning)
    return report


def drop_bad_rows(ds_or_dict, report: ValidationReport, limit: int = 50):
    """Return the data without the rows in ``report`` and log how many and which were dropped."""
    splits, single = _as_dict(ds_or_dict)
    bad = report.bad_indices()
    unknown = sorted(set(bad) - set(splits))
    if unknown:
        raise ValueError(f"report names splits {unknown} that are not in the data (was it made from other data?)")
    cleaned = {
        name: ds.select([i for i in range(len(ds)) if i not in bad[name]]) if name in bad else ds
        for name, ds in splits.items()
    }
    if report.problems:
        header = f"dropped {len(report.problems)} of {report.n_rows} rows that failed validation:"
        logger.warning(format_problems(header, [str(p) for p in report.problems], limit))
    return cleaned[_SINGLE] if single else datasets.DatasetDict(cleaned)
