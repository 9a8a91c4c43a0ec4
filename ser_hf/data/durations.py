"""Audio durations read once and cached on disk, shared by validation and length-grouped batching.

Why: grouping batches by length (and the seconds-budget sampler) needs every utterance's duration.
Reading 270k headers takes minutes on network storage, and every launch and every process did it
again. Here durations are read once (threads, progress bar), stored in a Parquet table keyed by
``(path, size, mtime)``, and a later launch only ``stat``s the files: an entry whose size or mtime
changed is read again, so the cache can never go stale silently.

Where the cache lives: ``cache_path`` if given; else ``.ser_hf_durations.parquet`` in the folder the
audio files share (next to the corpus and its manifest) when it is writable; else
``$SER_HF_CACHE`` (default ``~/.cache/ser_hf``)``/durations/<hash of that folder>.parquet``.

Distributed runs: only the main process reads and writes; the others wait for it and load the
table it wrote (`read_durations(..., trust_cache=True)` skips the per-file ``stat``).
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

logger = logging.getLogger(__name__)

CACHE_NAME = ".ser_hf_durations.parquet"
_COLUMNS = ("path", "size", "mtime_ns", "seconds")


def default_cache_path(paths: Sequence[str]) -> str:
    """The cache file for these audio paths (see the module docstring for the rule)."""
    folders = {os.path.dirname(os.path.abspath(p)) for p in paths}
    common = os.path.commonpath(sorted(folders)) if folders else os.getcwd()
    if os.path.isdir(common) and os.access(common, os.W_OK):
        return os.path.join(common, CACHE_NAME)
    root = os.environ.get("SER_HF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ser_hf")
    return os.path.join(root, "durations", hashlib.sha1(common.encode()).hexdigest()[:16] + ".parquet")


def load_cache(cache_path: str) -> dict[str, tuple[int, int, float]]:
    """``{path: (size, mtime_ns, seconds)}`` from a cache file; empty if it is missing or unreadable."""
    import pyarrow.parquet as pq

    if not os.path.isfile(cache_path):
        return {}
    try:
        table = pq.read_table(cache_path, columns=list(_COLUMNS))
    except Exception as exc:  # a damaged cache is rebuilt, never trusted
        logger.warning("ignoring unreadable durations cache %s (%s)", cache_path, exc)
        return {}
    columns = [table.column(name).to_pylist() for name in _COLUMNS]
    return {path: (size, mtime, seconds) for path, size, mtime, seconds in zip(*columns)}


def _save_cache(cache_path: str, entries: dict[str, tuple[int, int, float]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ser_hf.io import atomic_path

    os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
    paths = list(entries)
    table = pa.table({
        "path": pa.array(paths, pa.string()),
        "size": pa.array([entries[p][0] for p in paths], pa.int64()),
        "mtime_ns": pa.array([entries[p][1] for p in paths], pa.int64()),
        "seconds": pa.array([entries[p][2] for p in paths], pa.float64()),
    })
    with atomic_path(cache_path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)


def _stat(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def _stat_many(paths: list[str]) -> list[tuple[int, int] | None]:
    return [_stat(path) for path in paths]


def _chunks(values: list, size: int) -> list[list]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def _header_seconds(path: str) -> tuple[float, str | None]:
    from ser_hf.data.audio import duration_seconds

    try:
        return float(duration_seconds(path)), None
    except Exception as exc:  # reported per file by the caller
        return math.nan, f"{type(exc).__name__}: {exc}"


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
    from tqdm.auto import tqdm

    paths = [os.path.abspath(os.fspath(p)) for p in paths]
    if not paths:
        return np.zeros(0, dtype=np.float64)
    cache_path = cache_path or default_cache_path(paths)
    cached = load_cache(cache_path)
    seconds = np.full(len(paths), math.nan)
    threads = num_threads or min(8, (os.cpu_count() or 1) * 2)
    todo: list[int] = []
    keys: dict[int, tuple[int, int]] = {}
    if trust_cache:
        for i, path in enumerate(paths):
            entry = cached.get(path)
            if entry is None:
                todo.append(i)
            else:
                seconds[i] = entry[2]
    else:
        with ThreadPoolExecutor(threads) as pool:  # executor.map ignores chunksize for threads: chunk by hand
            stats = [key for chunk in pool.map(_stat_many, _chunks(paths, 4096)) for key in chunk]
        for i, (path, key) in enumerate(zip(paths, stats)):
            entry = cached.get(path)
            if key is not None and entry is not None and (entry[0], entry[1]) == key:
                seconds[i] = entry[2]
            else:
                todo.append(i)
                if key is not None:
                    keys[i] = key
    errors: dict[int, str] = {}
    if todo:
        with ThreadPoolExecutor(threads) as pool, tqdm(
            total=len(todo), desc="reading audio durations", unit="file", disable=not progress
        ) as bar:
            chunks = _chunks(todo, 64)
            for chunk, results in zip(chunks, pool.map(lambda c: [_header_seconds(paths[k]) for k in c], chunks)):
                for i, (value, error) in zip(chunk, results):
                    seconds[i] = value
                    if error is not None:
                        errors[i] = error
                bar.update(len(chunk))
        if write_cache:
            for i in todo:
                key = keys.get(i) or _stat(paths[i])
                if i not in errors and key is not None:
                    cached[paths[i]] = (key[0], key[1], float(seconds[i]))
            try:
                _save_cache(cache_path, cached)
            except OSError as exc:
                logger.warning("could not write the durations cache %s (%s)", cache_path, exc)
        logger.info("read %d audio durations (%d from the cache %s)", len(todo), len(paths) - len(todo), cache_path)
    if errors and strict:
        listed = "; ".join(f"{paths[i]}: {errors[i]}" for i in list(errors)[:10])
        raise ValueError(f"{len(errors)} audio file(s) have no readable duration: {listed}")
    return seconds


__all__ = ["CACHE_NAME", "default_cache_path", "load_cache", "read_durations"]
