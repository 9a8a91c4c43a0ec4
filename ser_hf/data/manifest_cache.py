"""Parsed manifests cached on disk, so a second launch does not parse a 270k-line CSV again.

Why: turning a manifest into the schema is a Python loop over every line (a few seconds per 100k
rows), repeated by every process of every launch. The parsed `DatasetDict` is saved (Arrow, via
``save_to_disk``; never pickle) under ``$SER_HF_CACHE`` (default ``~/.cache/ser_hf``)``/manifests/``,
keyed by the manifest's absolute path, size, mtime and content hash, every parse option, and
`FORMAT_VERSION`:
an edited manifest or a changed option is parsed again. Only clean parses are stored (a manifest
whose bad lines raise is parsed, and reported, every time); a manifest's older entries are
removed when a new one is written. A cache entry that cannot be read is ignored.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile

import datasets

logger = logging.getLogger(__name__)

# Bump when the loader's output for the same file and options changes.
FORMAT_VERSION = 1
_META = "ser_hf_manifest.json"


def cache_root() -> str:
    root = os.environ.get("SER_HF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ser_hf")
    return os.path.join(root, "manifests")


def cache_key(path: str, options: dict) -> dict | None:
    """The identity of one parse (None when the manifest cannot be read).

    The file's bytes are hashed too (milliseconds for 100k lines): a manifest rewritten within the
    file system's timestamp granularity with the same size is still noticed."""
    path = os.path.abspath(path)
    digest = hashlib.sha1()
    try:
        status = os.stat(path)
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return {"version": FORMAT_VERSION, "path": path, "size": status.st_size, "mtime_ns": status.st_mtime_ns,
            "sha1": digest.hexdigest(), "options": options}


def _folder(key: dict) -> str:
    manifest = hashlib.sha1(key["path"].encode("utf-8", "surrogateescape")).hexdigest()[:16]
    parse = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return os.path.join(cache_root(), f"{manifest}-{parse}")


def load(key: dict | None) -> tuple[datasets.DatasetDict, dict] | None:
    """(the parsed manifest, its extra facts) stored under ``key``, or None."""
    if key is None:
        return None
    folder = _folder(key)
    meta_path = os.path.join(folder, _META)
    if not os.path.isfile(meta_path):
        return None
    try:
        with open(meta_path, encoding="utf-8") as handle:
            meta = json.load(handle)
        if meta.get("key") != json.loads(json.dumps(key, default=str)):
            return None
        corpus = datasets.load_from_disk(folder)
    except Exception as exc:  # a damaged entry is parsed again, never trusted
        logger.warning("ignoring an unreadable manifest cache %s (%s)", folder, exc)
        return None
    if not isinstance(corpus, datasets.DatasetDict):
        return None
    corpus = datasets.DatasetDict({name: corpus[name] for name in meta["splits"]})  # the loader's split order
    return corpus, meta.get("extra", {})


def save(key: dict | None, corpus: datasets.DatasetDict, extra: dict | None = None) -> None:
    """Store a parse atomically (written to a temporary folder, then renamed); failures only warn."""
    if key is None:
        return
    folder = _folder(key)
    root = os.path.dirname(folder)
    try:
        os.makedirs(root, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=root)
        try:
            from datasets import utils as progress_bars

            quiet = progress_bars.are_progress_bars_disabled()
            progress_bars.disable_progress_bars()  # a cache write is not news
            try:
                corpus.save_to_disk(tmp)
            finally:
                if not quiet:
                    progress_bars.enable_progress_bars()
            with open(os.path.join(tmp, _META), "w", encoding="utf-8") as handle:
                json.dump({"key": key, "splits": list(corpus), "extra": extra or {}}, handle, default=str)
            if os.path.isdir(folder):  # another process stored the same parse first
                return
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        prefix = os.path.basename(folder).split("-")[0] + "-"
        for name in os.listdir(root):  # older parses of this manifest
            if name.startswith(prefix) and name != os.path.basename(folder):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    except OSError as exc:
        logger.warning("could not cache the parsed manifest in %s (%s)", folder, exc)


__all__ = ["FORMAT_VERSION", "cache_key", "cache_root", "load", "save"]
