"""Check a manifest before training: one pass that reports every bad row at once.

Finding one bad file per multi-hour run is the failure this prevents, so nothing stops at the
first problem: each row collects all its reasons and the report lists them together. Audio is
probed from the header plus a tiny read (``probe_audio``), never fully decoded.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import datasets
from tqdm.auto import tqdm

from ser_hf.data.audio import AudioError, AudioInfo, describe_audio, probe_audio
from ser_hf.data.schema import ATTRIBUTES, COLUMNS

logger = logging.getLogger(__name__)

_SINGLE = "dataset"  # split name used when a bare Dataset (not a DatasetDict) is validated


class DataValidationError(ValueError):
    """Raised with a message that lists every bad row (or line) found, one per line."""

    def __init__(self, message: str, problems: list | tuple = ()):
        super().__init__(message)
        self.problems = list(problems)


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

    def __str__(self) -> str:
        return f"{self.split}[{self.index}] id={self.id!r} audio={self.audio}: {'; '.join(self.reasons)}"


@dataclass
class ValidationReport:
    n_rows: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # seconds per row and split (None where unreadable or not checked); free once headers are read
    durations: dict[str, list[float | None]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def bad_indices(self) -> dict[str, set[int]]:
        bad: dict[str, set[int]] = {}
        for problem in self.problems:
            bad.setdefault(problem.split, set()).add(problem.index)
        return bad

    def format(self, limit: int = 50) -> str:
        header = f"{len(self.problems)} of {self.n_rows} rows failed validation:"
        return format_problems(header, [str(p) for p in self.problems], limit)

    def raise_if_errors(self, limit: int = 50) -> None:
        if self.problems:
            raise DataValidationError(self.format(limit), self.problems)


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


def _audio_check(path) -> tuple[AudioInfo | None, str | None]:
    try:
        return probe_audio(path if path is not None else ""), None
    except AudioError as exc:
        return None, exc.reason
    except OSError as exc:  # e.g. permission denied
        return None, f"unreadable audio ({exc})"


def _row_batches(ds: datasets.Dataset, batch_size: int = 1024):
    """Rows as dicts, read a batch at a time (per-row Dataset indexing costs ~1 ms a row)."""
    for batch in ds.iter(batch_size=batch_size):
        columns = list(batch)
        yield [dict(zip(columns, values)) for values in zip(*batch.values())]


def validate_dataset(
    ds_or_dict,
    *,
    labels=None,
    attribute_range: tuple[float, float] | None = None,
    require_label: bool = False,
    require_attributes: bool = False,
    sampling_rate: int | None = None,
    check_audio: bool = True,
    progress: bool | None = None,
    num_threads: int = 4,
) -> ValidationReport:
    """Check every row of a Dataset/DatasetDict in the common schema; never raises for bad rows.

    Reported per row: missing/unreadable/empty/corrupt audio, label not in ``labels``, attribute
    NaN or outside the inclusive ``attribute_range``, duplicate id (across splits; later copies are
    the bad ones), missing label/attributes when required. With ``sampling_rate`` a warning counts
    files stored below that rate (they will be upsampled, which adds no information). ``progress``:
    tqdm bar on/off; ``None`` shows it only on a terminal. Audio headers are probed by
    ``num_threads`` threads because the work is file I/O (slow on network disks).
    """
    splits, _ = _as_dict(ds_or_dict)
    for split, ds in splits.items():
        missing = [c for c in COLUMNS if c not in ds.column_names]
        if missing:
            raise ValueError(f"split {split!r} lacks schema columns {missing}; build it with ser_hf.data.schema")
    allowed = None if labels is None else set(labels)
    report = ValidationReport(n_rows=sum(len(ds) for ds in splits.values()))
    seen_ids: dict[str, str] = {}
    low_rate: list[str] = []
    bar = tqdm(total=report.n_rows, desc="validating", unit="row", disable=None if progress is None else not progress)
    with bar, ThreadPoolExecutor(max(1, num_threads)) as pool:
        for split, ds in splits.items():
            durations = report.durations.setdefault(split, [])
            index = 0
            for rows in _row_batches(ds):
                audio_checks = pool.map(_audio_check, [row["audio"] for row in rows]) if check_audio else None
                for row in rows:
                    reasons = []
                    row_id = row["id"]
                    if row_id in (None, ""):
                        reasons.append("missing id")
                    elif row_id in seen_ids:
                        reasons.append(f"duplicate id (first seen at {seen_ids[row_id]})")
                    else:
                        seen_ids[row_id] = f"{split}[{index}]"
                    label = row["label"]
                    if label is None:
                        if require_label:
                            reasons.append("missing label")
                    elif allowed is not None and label not in allowed:
                        reasons.append(f"unknown label {label!r} (expected one of {sorted(allowed)})")
                    reasons += _attribute_reasons(row, attribute_range, require_attributes)
                    info, audio_reason = next(audio_checks) if check_audio else (None, None)
                    if audio_reason:
                        reasons.append(audio_reason)
                    elif info is not None and sampling_rate is not None and info.samplerate < sampling_rate:
                        low_rate.append(describe_audio(row["audio"]))
                    durations.append(None if info is None else info.duration)
                    if reasons:
                        report.problems.append(RowProblem(split, index, row_id, describe_audio(row["audio"]), tuple(reasons)))
                    index += 1
                bar.update(len(rows))
    if low_rate:
        report.warnings.append(
            f"{len(low_rate)} files are stored below {sampling_rate} Hz and will be upsampled (e.g. {low_rate[0]})"
        )
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
