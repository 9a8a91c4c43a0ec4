"""YAML config + command-line overrides -> argument dataclasses (as in TRL's recipes).

``ser-hf train --config recipes/emodb/config.yaml --learning_rate 1e-4``: the YAML sets the defaults,
the command line wins. Unknown YAML keys are an error (a typo must not silently fall back to a default).
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
from typing import Any

import yaml
from transformers import HfArgumentParser

from ser_hf.errors import ConfigError


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML config as a dict (``safe_load``: no Python objects); problems name the file and line."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as error:
        with open(path, "rb") as handle:
            line = handle.read()[: error.start].count(b"\n") + 1
        raise ConfigError(f"{path}, line {line}: not valid UTF-8 text; save the config as UTF-8") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{path}{where}: invalid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of argument names to values")
    return data


def _did_you_mean(key: str, names) -> str:
    close = difflib.get_close_matches(key, sorted(names), n=1)
    return f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key)


def _json_mapping(text: str) -> dict:
    """Mapping-valued options on the command line are JSON: ``--corpus_options '{"dev_speakers": ["09"]}'``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def parse_config(
    dataclass_types: tuple[type, ...],
    argv: list[str] | None = None,
    *,
    prog: str | None = None,
    ignore_extra_keys: bool = False,
    defaults: dict[str, Any] | None = None,
    description: str | None = None,
):
    """Parse ``--config FILE`` plus overrides into instances of ``dataclass_types`` (in order).

    ``ignore_extra_keys`` lets a command reuse another command's YAML (``ser-hf evaluate`` reading a
    training recipe for its data settings); otherwise an unknown key is an error.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    parser = HfArgumentParser(dataclass_types, prog=prog, description=description)
    parser.add_argument("--config", default=None, help="YAML file of argument values; command-line options override it.")
    for action in parser._actions:
        if action.type is dict:
            action.type = _json_mapping
    if defaults:
        parser.set_defaults(**defaults)
    if known.config:
        values = load_yaml(known.config)
        names = {f.name for cls in dataclass_types for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown and not ignore_extra_keys:
            listed = ", ".join(_did_you_mean(key, names) for key in unknown)
            raise ConfigError(
                f"{known.config}: unknown config keys {listed}; every key must be an option of this command "
                f"(see --help)"
            )
        values = {key: value for key, value in values.items() if key in names}
        parser.set_defaults(**values)
        for action in parser._actions:  # a value from the YAML satisfies a required argument
            if action.dest in values:
                action.required = False
    try:
        outputs = parser.parse_args_into_dataclasses(args=rest + (["--config", known.config] if known.config else []))
    except (ValueError, TypeError) as error:  # raised by an arguments dataclass's own checks (__post_init__)
        if isinstance(error, ConfigError):
            raise
        source = f" (from {known.config} and the command line)" if known.config else ""
        raise ConfigError(f"invalid arguments{source}: {error}") from error
    return tuple(outputs[: len(dataclass_types)])
