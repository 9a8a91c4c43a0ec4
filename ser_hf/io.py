"""Atomic file output: write to a temporary file beside the target, then rename.

A crash or a second process never leaves a half-written metrics file, CSV or table behind.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator


_UMASK = os.umask(0)  # read once (os.umask can only be read by setting it)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path in the target's folder; it replaces ``path`` only if the block succeeds."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix or os.path.splitext(path)[1], dir=folder)
    os.close(handle)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give outputs the permissions open() would
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(value: Any):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def write_csv_atomic(path: str | os.PathLike, header: list[str] | tuple[str, ...], rows) -> None:
    """A CSV with ``header`` and ``rows`` (iterables of cells, already formatted as wanted)."""
    import csv

    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)


def publish_folder(staging: str | os.PathLike, target: str | os.PathLike, last: tuple[str, ...] = ("config.json",)) -> None:
    """Move every file of a fully written ``staging`` folder into ``target``, one atomic rename each.

    Each file appears whole (never truncated); the names in ``last`` (the file loaders open first)
    are moved after all the others. ``staging`` is removed afterwards. Both must be on one filesystem.
    """
    import shutil

    staging, target = os.fspath(staging), os.fspath(target)
    os.makedirs(target, exist_ok=True)
    names = sorted(os.listdir(staging), key=lambda name: (name in last, name))
    for name in names:
        source, destination = os.path.join(staging, name), os.path.join(target, name)
        if os.path.isdir(source):
            if os.path.isdir(destination):
                shutil.rmtree(destination)
        os.replace(source, destination)
    shutil.rmtree(staging, ignore_errors=True)
