"""Checks of a corpus folder as its owners release it: a missing file or folder is an error that
names it and what the corpus's layout expects there, before anything is indexed."""
from __future__ import annotations

import os


class CorpusLayoutError(FileNotFoundError):
    """A corpus folder does not have the layout of the release (the message names what is missing)."""


def require_dir(path: str, corpus: str, expected: str) -> str:
    """``path`` if it is a folder, else a `CorpusLayoutError` naming it and what belongs there."""
    if not os.path.isdir(path):
        raise CorpusLayoutError(f"{corpus}: missing folder {path} (expected {expected})")
    return path


def require_file(path: str, corpus: str, expected: str) -> str:
    """``path`` if it is a file, else a `CorpusLayoutError` naming it and what belongs there."""
    if not os.path.isfile(path):
        raise CorpusLayoutError(f"{corpus}: missing file {path} (expected {expected})")
    return path


def first_existing(paths: list[str], corpus: str, expected: str, *, folder: bool = False) -> str:
    """The first of several places a release puts a file or folder (e.g. archives unpack differently)."""
    check = os.path.isdir if folder else os.path.isfile
    for path in paths:
        if check(path):
            return path
    raise CorpusLayoutError(f"{corpus}: missing {'folder' if folder else 'file'} {paths[0]} (expected {expected}"
                            + (f"; also looked for {', '.join(paths[1:])})" if len(paths) > 1 else ")"))
