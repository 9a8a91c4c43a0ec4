"""Durable `predict` outputs: a resumable journal while running, one atomic swap when done.

**Journal.** While `predict` runs, each finished unit of work (a batch of short files, or one long
file) is appended to ``<output_dir>/.journal.jsonl`` as one JSON line and flushed to disk. A killed
run restarted with the same settings reads the journal and skips those units; a line cut short by
the kill is ignored. Units are fixed before the first forward pass (length-sorted batches of the
whole file list), so a resumed run computes exactly the batches an uninterrupted one would: the
outputs are identical, not merely close. The journal's first line records the settings; a run
with other settings (model, window, batch size, files) starts afresh.

**Publishing.** The finished set (``windows.csv``, ``files.csv``, ``predictions.json``,
``timelines/``) is written into a new hidden folder ``.run-<id>`` and made current by replacing
one symlink, ``.current``, with ``os.replace`` (atomic). The visible names are fixed symlinks into
``.current`` (``predictions.json -> .current/predictions.json``), so a reader sees either the old
set or the new one, never a mix (resolve ``.current`` once to read several files of one run; the
previous run's folder is kept until the next publish). This is Kubernetes' AtomicWriter layout.

**Cleaning.** A lock file (``.lock``, `fcntl.flock`) keeps two runs out of one folder; with it held,
``.tmp-*`` leftovers of a killed run and unreferenced ``.run-*`` folders are removed.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

logger = logging.getLogger(__name__)

JOURNAL_NAME = ".journal.jsonl"
CURRENT_LINK = ".current"
RUN_PREFIX = ".run-"
TEMP_PREFIX = ".tmp-"
LOCK_NAME = ".lock"
JOURNAL_VERSION = 1


@contextlib.contextmanager
def locked_output_dir(output_dir: str | os.PathLike) -> Iterator[str]:
    """Hold ``output_dir``'s lock (create the folder); refuse if another run holds it; clean leftovers."""
    output_dir = os.fspath(output_dir)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"output_dir {output_dir} exists and is not a folder")
    os.makedirs(output_dir, exist_ok=True)
    handle = open(os.path.join(output_dir, LOCK_NAME), "a")
    _HELD_LOCKS.append(handle)
    try:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not POSIX: no lock, leftovers are still cleaned
            pass
        except BlockingIOError as exc:
            raise ValueError(f"output_dir {output_dir} is in use by another `ser-hf predict`; wait or choose another folder") from exc
        clean_stale(output_dir)
        yield output_dir
    finally:
        _HELD_LOCKS.remove(handle)
        handle.close()


_HELD_LOCKS: list = []


def release_inherited_locks(_worker_id: int | None = None) -> None:
    """DataLoader ``worker_init_fn``: close the lock files a forked worker inherited. An flock belongs to
    the open file, shared with every forked child, so a worker outliving a killed parent would otherwise
    keep the folder locked and refuse the rerun that should resume it."""
    for handle in _HELD_LOCKS:
        try:
            os.close(handle.fileno())
        except OSError:
            pass


def clean_stale(output_dir: str) -> list[str]:
    """Remove ``.tmp-*`` files/folders (here and in the current run's folder) and ``.run-*`` folders
    that are neither current nor the previous run. Returns what was removed."""
    current = _current_run(output_dir)
    removed = []
    folders = [output_dir] + ([os.path.join(output_dir, current)] if current else [])
    for folder in folders:
        for root, dirs, names in os.walk(folder):
            for name in list(dirs) + names:
                if name.startswith(TEMP_PREFIX):
                    path = os.path.join(root, name)
                    shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
                    removed.append(path)
            dirs[:] = [d for d in dirs if not d.startswith((TEMP_PREFIX, RUN_PREFIX))]
    runs = sorted((n for n in os.listdir(output_dir) if n.startswith(RUN_PREFIX)), key=lambda n: os.path.getmtime(os.path.join(output_dir, n)))
    # Keep the current run and the newest other one (a reader may still be reading it); drop older ones.
    others = [n for n in runs if n != current]
    keep = {current, others[-1]} if others else {current}
    for name in runs:
        if name not in keep:
            shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
            removed.append(os.path.join(output_dir, name))
    if removed:
        logger.info("removed %d stale temporary file(s)/folder(s) of an interrupted run in %s", len(removed), output_dir)
    return removed


def _current_run(output_dir: str) -> str | None:
    link = os.path.join(output_dir, CURRENT_LINK)
    return os.readlink(link) if os.path.islink(link) else None


def publish(output_dir: str, write: Callable[[str], list[str]]) -> None:
    """Write a complete output set with ``write(folder) -> top-level names`` into a new run folder,
    then make it current in one atomic rename; visible names become symlinks into ``.current``."""
    run = f"{RUN_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}"
    staging = os.path.join(output_dir, TEMP_PREFIX + run[len(RUN_PREFIX):])
    os.makedirs(staging)
    names = write(staging)
    os.replace(staging, os.path.join(output_dir, run))  # the folder appears whole, under its final name
    _replace_with_symlink(os.path.join(output_dir, CURRENT_LINK), run)
    for name in names:
        target = os.path.join(output_dir, name)
        wanted = os.path.join(CURRENT_LINK, name)
        if os.path.islink(target) and os.readlink(target) == wanted:
            continue
        if os.path.isdir(target) and not os.path.islink(target):  # a real folder from an older ser-hf
            shutil.rmtree(target)
        _replace_with_symlink(target, wanted)
    for name in os.listdir(output_dir):  # names of an earlier set that this one does not have
        path = os.path.join(output_dir, name)
        if os.path.islink(path) and os.readlink(path).startswith(CURRENT_LINK + os.sep) and name not in names:
            os.remove(path)


def _replace_with_symlink(path: str, target: str) -> None:
    temporary = os.path.join(os.path.dirname(path), f"{TEMP_PREFIX}link-{os.getpid()}-{time.monotonic_ns()}")
    os.symlink(target, temporary)
    os.replace(temporary, path)


# ---------------------------------------------------------------------------------------------- journal
def settings_key(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


class Journal:
    """Append-only record of finished units, one JSON line each, flushed and fsynced per line."""

    def __init__(self, output_dir: str, settings: dict[str, Any]):
        self.path = os.path.join(output_dir, JOURNAL_NAME)
        self.key = settings_key({**settings, "journal_version": JOURNAL_VERSION})
        self.done: dict[int, dict] = self._read()
        mode = "a" if self.done or self._has_header() else "w"
        self._handle = open(self.path, mode, encoding="utf-8")
        if mode == "w":
            self._write_line({"settings_key": self.key})

    def _has_header(self) -> bool:
        return os.path.isfile(self.path) and self._header() == self.key

    def _header(self) -> str | None:
        try:
            with open(self.path, encoding="utf-8") as handle:
                return json.loads(handle.readline()).get("settings_key")
        except (OSError, ValueError, AttributeError):
            return None

    def _read(self) -> dict[int, dict]:
        if not os.path.isfile(self.path):
            return {}
        if self._header() != self.key:
            logger.info("%s is from a run with other settings; starting afresh", self.path)
            os.remove(self.path)
            return {}
        done = {}
        with open(self.path, encoding="utf-8") as handle:
            handle.readline()
            for line in handle:
                if not line.endswith("\n"):
                    break  # cut short by a kill: that unit is recomputed
                try:
                    entry = json.loads(line)
                except ValueError:
                    break
                done[int(entry["unit"])] = entry
        if done:
            logger.info("resuming: %d unit(s) already done in %s", len(done), self.path)
        # Rewrite without any torn tail so later appends start on a clean line.
        rewrite = os.path.join(os.path.dirname(self.path), f"{TEMP_PREFIX}journal-{os.getpid()}")
        with open(rewrite, "w", encoding="utf-8") as handle:
            handle.write(json.dumps({"settings_key": self.key}) + "\n")
            for entry in done.values():
                handle.write(json.dumps(entry) + "\n")
        os.replace(rewrite, self.path)
        return done

    def _write_line(self, entry: dict) -> None:
        self._handle.write(json.dumps(entry) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def record(self, unit: int, entry: dict) -> None:
        entry = {"unit": unit, **entry}
        self._write_line(entry)
        self.done[unit] = entry

    def close(self, *, remove: bool) -> None:
        self._handle.close()
        if remove and os.path.exists(self.path):
            os.remove(self.path)


__all__ = ["CURRENT_LINK", "JOURNAL_NAME", "Journal", "clean_stale", "locked_output_dir", "publish", "settings_key"]
