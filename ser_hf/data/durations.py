"""Audio headers read once and cached on disk, shared by validation and length-grouped batching.

Why: validation opens every audio file (header plus a tiny read at both ends, `probe_audio`), and
grouping batches by length (and the seconds-budget sampler) needs every utterance's duration.
Reading 270k headers takes minutes on network storage, and every launch and every process did it
again. Here headers are read once (threads, progress bar), stored in one Parquet table keyed by
``(path, size, mtime)``, and a later launch only ``stat``s the files: an entry whose size or mtime
changed is read again, so the cache can never go stale silently. The table holds each file's
frames, rate and channels, whether the full probe ran (validation) or only the header (durations),
and the probe's error for a broken file, so the second start reports the same problems without
opening anything. Missing files and OS errors (permissions) are never cached.

Where the cache lives: ``cache_path`` if given; else ``.ser_hf_durations.parquet`` in the folder the
audio files share when it is writable; else ``$SER_HF_CACHE`` (default ``~/.cache/ser_hf``)
``/durations/<hash of that folder>.parquet``. A training run validates every split first and hands
the table it used to length grouping (``SERTrainer.audio_header_cache``), so the training split's
durations come from the same table even when its files share a deeper folder. (No search of parent
folders: a cache left in a parent such as ``/tmp`` would otherwise collect every corpus below it.)

Distributed runs: only the main process reads and writes; the others wait for it and load the
table it wrote (``trust_cache=True`` skips the per-file ``stat``).
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

CACHE_NAME = ".ser_hf_durations.parquet"
_COLUMNS = ("path", "size", "mtime_ns", "seconds", "frames", "samplerate", "channels", "probed", "error")


def _fallback_cache_path(folder: str) -> str:
    root = os.environ.get("SER_HF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ser_hf")
    digest = hashlib.sha1(folder.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return os.path.join(root, "durations", digest + ".parquet")


def default_cache_path(paths: Sequence[str]) -> str:
    """The cache file for these audio paths (see the module docstring for the rule)."""
    return _default_cache_path([_absolute(os.fspath(p)) for p in paths])


def _default_cache_path(paths: Sequence[str]) -> str:  # absolute paths
    folders = {p.rpartition(os.sep)[0] or os.sep for p in paths}
    common = os.path.commonpath(sorted(folders)) if folders else os.getcwd()
    if os.path.isdir(common) and os.access(common, os.W_OK):
        return os.path.join(common, CACHE_NAME)
    return _fallback_cache_path(common)


@dataclass
class HeaderTable:
    """The cache's rows as columns (numpy arrays, plus a path -> row index)."""

    paths: list[str]
    size: np.ndarray
    mtime_ns: np.ndarray
    seconds: np.ndarray
    frames: np.ndarray
    samplerate: np.ndarray
    channels: np.ndarray
    probed: np.ndarray
    errors: list[str | None]

    def __post_init__(self):
        self.index = dict(zip(self.paths, range(len(self.paths))))
        self.readable = np.fromiter((e is None for e in self.errors), dtype=bool, count=len(self.errors))

    @classmethod
    def empty(cls) -> "HeaderTable":
        return cls([], *(np.zeros(0, dtype=t) for t in (np.int64, np.int64, np.float64, np.int64, np.int64, np.int64, bool)), [])

    def rows_of(self, paths: Sequence[str]) -> np.ndarray:
        """Row index of each path (-1 where it has none)."""
        index = self.index
        return np.fromiter((index.get(p, -1) for p in paths), dtype=np.int64, count=len(paths))

    def updated(self, new: dict[str, tuple]) -> "HeaderTable":
        """This table with ``new`` ``{path: (size, mtime_ns, seconds, frames, rate, channels, probed, error)}`` rows."""
        keep = [i for i, p in enumerate(self.paths) if p not in new]
        added = list(new.values())
        columns = list(zip(*added)) if added else [()] * 8
        return HeaderTable(
            [self.paths[i] for i in keep] + list(new),
            *(np.concatenate([old[keep], np.asarray(col, dtype=old.dtype)])
              for old, col in zip((self.size, self.mtime_ns, self.seconds, self.frames, self.samplerate, self.channels,
                                   self.probed), columns[:7])),
            [self.errors[i] for i in keep] + list(columns[7]),
        )


def load_table(cache_path: str) -> HeaderTable:
    """The cache file's rows; empty if it is missing, unreadable or from an older layout."""
    import pyarrow.parquet as pq

    if not os.path.isfile(cache_path):
        return HeaderTable.empty()
    try:
        table = pq.read_table(cache_path, columns=list(_COLUMNS))
    except Exception as exc:  # a damaged (or older) cache is rebuilt, never trusted
        logger.warning("ignoring unreadable durations cache %s (%s)", cache_path, exc)
        return HeaderTable.empty()
    numeric = [table.column(name).to_numpy() for name in _COLUMNS[1:8]]
    return HeaderTable(table.column("path").to_pylist(), *numeric, table.column("error").to_pylist())


def load_cache(cache_path: str) -> dict[str, tuple[int, int, float]]:
    """``{path: (size, mtime_ns, seconds)}`` of the readable files in a cache file."""
    table = load_table(cache_path)
    return {p: (int(table.size[i]), int(table.mtime_ns[i]), float(table.seconds[i]))
            for i, p in enumerate(table.paths) if table.errors[i] is None}


def _save_table(cache_path: str, table: HeaderTable) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ser_hf.io import atomic_path

    os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
    arrow = pa.table({
        "path": pa.array(table.paths, pa.string()),
        "size": pa.array(table.size, pa.int64()),
        "mtime_ns": pa.array(table.mtime_ns, pa.int64()),
        "seconds": pa.array(table.seconds, pa.float64()),
        "frames": pa.array(table.frames, pa.int64()),
        "samplerate": pa.array(table.samplerate, pa.int64()),
        "channels": pa.array(table.channels, pa.int64()),
        "probed": pa.array(table.probed, pa.bool_()),
        "error": pa.array(table.errors, pa.string()),
    })
    with atomic_path(cache_path, suffix=".parquet") as tmp:
        pq.write_table(arrow, tmp)


def _stat(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        return None
    return status.st_size, status.st_mtime_ns


def _stat_many(paths: list[str]) -> list[tuple[int, int] | None]:
    return [_stat(path) for path in paths]


def _chunks(values: list, size: int) -> list[list]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def _stats(paths: list[str], threads: int) -> tuple[np.ndarray, np.ndarray]:
    """(size, mtime_ns) of every path; -1 where it cannot be stat-ed."""
    with ThreadPoolExecutor(threads) as pool:  # executor.map ignores chunksize for threads: chunk by hand
        stats = [key for chunk in pool.map(_stat_many, _chunks(paths, 4096)) for key in chunk]
    size = np.fromiter((s[0] if s else -1 for s in stats), dtype=np.int64, count=len(paths))
    mtime = np.fromiter((s[1] if s else -1 for s in stats), dtype=np.int64, count=len(paths))
    return size, mtime


@dataclass(frozen=True)
class HeaderFacts:
    """What one file's header read (or probe) found; ``error`` is the probe's message for a broken file."""

    frames: int = 0
    samplerate: int = 0
    channels: int = 0
    error: str | None = None
    cacheable: bool = True  # False for missing files and OS errors (the next launch must look again)

    @property
    def seconds(self) -> float:
        return self.frames / self.samplerate if self.error is None and self.samplerate else math.nan


def _header_info(path: str) -> HeaderFacts:
    """The header alone (durations); a file it cannot read is not cached."""
    from ser_hf.data.audio import audio_info

    try:
        info = audio_info(path)
    except Exception as exc:  # reported per file by the caller
        return HeaderFacts(error=f"{type(exc).__name__}: {exc}", cacheable=False)
    return HeaderFacts(info.frames, info.samplerate, info.channels)


@dataclass
class Headers:
    """Header facts of many files, as columns in input order (``errors[i]`` is None for a readable file)."""

    frames: np.ndarray
    samplerate: np.ndarray
    channels: np.ndarray
    errors: list[str | None]

    @property
    def seconds(self) -> np.ndarray:
        ok = np.array([e is None for e in self.errors], dtype=bool) & (self.samplerate > 0)
        return np.where(ok, self.frames / np.maximum(self.samplerate, 1), np.nan)


def _absolute(path: str) -> str:
    """``os.path.abspath`` without the call for paths that are already absolute and normal."""
    if path.startswith(os.sep) and "/." not in path and "//" not in path and not path.endswith(os.sep):
        return path
    return os.path.abspath(path)


def cached_headers(
    paths: Sequence[str],
    read: Callable[[str], HeaderFacts],
    *,
    probed: bool,
    cache_path: str | None = None,
    num_threads: int | None = None,
    progress: bool | None = True,
    trust_cache: bool = False,
    write_cache: bool = True,
    desc: str = "reading audio headers",
) -> Headers:
    """``read(path)`` for every path, through the on-disk cache (input order).

    ``probed``: the facts must come from validation's probe (a header-only entry is read again);
    otherwise any entry will do, but broken-file entries are read again (their message is the
    probe's). ``trust_cache``: take cached entries without ``stat`` (for processes that wait for
    the main one to refresh the cache). ``progress``: a bar on/off, ``None`` only on a terminal.
    """
    from tqdm.auto import tqdm

    given = [os.fspath(p) for p in paths]  # read as given (messages name the path the user wrote)
    paths = [_absolute(p) for p in given]
    n = len(paths)
    cache_path = cache_path or (_default_cache_path(paths) if paths else "")
    table = load_table(cache_path) if paths else HeaderTable.empty()
    threads = num_threads or min(8, (os.cpu_count() or 1) * 2)
    rows = table.rows_of(paths)
    safe = np.maximum(rows, 0)
    usable = rows >= 0
    if len(table.paths):
        usable &= table.probed[safe] if probed else table.readable[safe]
        if not trust_cache:
            size, mtime = _stats(paths, threads)
            usable &= (size >= 0) & (table.size[safe] == size) & (table.mtime_ns[safe] == mtime)
    else:
        usable[:] = False
    if len(table.paths):
        frames, samplerate, channels = table.frames[safe], table.samplerate[safe], table.channels[safe]  # copies
        errors = [table.errors[r] if ok else None for r, ok in zip(rows.tolist(), usable.tolist())]
    else:
        frames, samplerate, channels = (np.zeros(n, dtype=np.int64) for _ in range(3))
        errors = [None] * n
    first: dict[str, int] = {}  # a file listed on several rows is read once
    stale = np.flatnonzero(~usable).tolist()
    for i in stale:
        first.setdefault(paths[i], i)
    todo = list(first.values())
    facts: dict[int, HeaderFacts] = {}
    if todo:
        with ThreadPoolExecutor(threads) as pool, tqdm(total=len(todo), desc=desc, unit="file",
                                                  disable=None if progress is None else not progress) as bar:
            chunks = _chunks(todo, 64)
            for chunk, results in zip(chunks, pool.map(lambda c: [read(given[k]) for k in c], chunks)):
                facts.update(zip(chunk, results))
                bar.update(len(chunk))
        for i in stale:
            fact = facts[first[paths[i]]]
            frames[i], samplerate[i], channels[i], errors[i] = fact.frames, fact.samplerate, fact.channels, fact.error
        if write_cache:
            new = {}
            for i in todo:
                fact = facts[i]
                key = _stat(paths[i]) if fact.cacheable else None
                if key is not None:
                    new[paths[i]] = (*key, fact.seconds, fact.frames, fact.samplerate, fact.channels, probed, fact.error)
            if new:
                try:
                    _save_table(cache_path, table.updated(new))
                except OSError as exc:
                    logger.warning("could not write the audio header cache %s (%s)", cache_path, exc)
        logger.info("read %d audio headers (%d from the cache %s)", len(todo), n - len(stale), cache_path)
    return Headers(frames, samplerate, channels, errors)


def read_durations(
    paths: Sequence[str],
    *,
    cache_path: str | None = None,
    num_threads: int | None = None,
    progress: bool = True,
    strict: bool = True,
    trust_cache: bool = False,
    write_cache: bool = True,
) -> np.ndarray:
    """Duration in seconds of every path (float64, input order), through the on-disk cache.

    ``strict``: an unreadable file is an error naming it (the first ten are listed); otherwise it
    gets NaN. ``trust_cache``: take cached entries without ``stat`` (for processes that wait for the
    main process to refresh the cache). ``num_threads`` reads headers in parallel (default 8).
    """
    paths = [_absolute(os.fspath(p)) for p in paths]
    headers = cached_headers(paths, _header_info, probed=False, cache_path=cache_path, num_threads=num_threads,
                             progress=progress, trust_cache=trust_cache, write_cache=write_cache,
                             desc="reading audio durations")
    seconds = headers.seconds
    errors = [(p, e) for p, e in zip(paths, headers.errors) if e is not None]
    if errors and strict:
        listed = "; ".join(f"{path}: {error}" for path, error in errors[:10])
        raise ValueError(f"{len(errors)} audio file(s) have no readable duration: {listed}")
    return seconds


__all__ = ["CACHE_NAME", "HeaderFacts", "Headers", "cached_headers", "default_cache_path", "load_cache", "read_durations"]
