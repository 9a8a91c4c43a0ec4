"""How a mapping-valued training strategy (``augment``, ``mixing``) is written: a mapping in YAML, or on the
command line a preset name or JSON text. One reader, so every strategy accepts and rejects the same spellings."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_OFF = ("", "none", "null")


def strategy_value(value: Any, *, name: str, presets: Mapping[str, Any] | None = None) -> Any | None:
    """``None``/``"none"``/``""`` -> None; a preset name -> its mapping; other text -> decoded JSON; else ``value``.

    The result is not validated here: each strategy checks its own keys and ranges.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() in _OFF:
        return None
    presets = presets or {}
    if text in presets:
        return presets[text]
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        choices = f"a preset ({', '.join(presets)}) or " if presets else ""
        raise ValueError(f"{name} must be {choices}a mapping (JSON on the command line): {exc.msg} in {text!r}") from None
