"""Errors meant for people, not for debuggers.

A `SERUserError` is something the user can fix (a bad row, a config key, a missing file): the
``ser-hf`` dispatcher prints its message to stderr and exits with status 2, without a traceback
(``ser-hf --debug ...`` or ``SER_HF_DEBUG=1`` shows it). Anything else is a bug and keeps its
traceback. The classes also derive from ``ValueError`` so code that caught ``ValueError`` before
still catches them.
"""
from __future__ import annotations


class SERUserError(ValueError):
    """A problem in what the user gave us; the message says what, where, and how to fix it."""


class DataError(SERUserError):
    """Bad input data: a manifest line, an audio file, a transcript, a label or attribute value."""


class ConfigError(SERUserError):
    """A bad config file, config key or argument value."""


__all__ = ["ConfigError", "DataError", "SERUserError"]
