"""YAML config + command-line overrides -> argument dataclasses (as in TRL's recipes).

``ser-hf train --config recipes/emodb/config.yaml --learning_rate 1e-4``: the YAML sets the defaults,
the command line wins. Unknown YAML keys are an error (a typo must not silently fall back to a default).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any

import yaml
from transformers import HfArgumentParser


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config must be a mapping of argument names to values")
    return data


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
):
    """Parse ``--config FILE`` plus overrides into instances of ``dataclass_types`` (in order).

    ``ignore_extra_keys`` lets a command reuse another command's YAML (``ser-hf evaluate`` reading a
    training recipe for its data settings); otherwise an unknown key is an error.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    parser = HfArgumentParser(dataclass_types, prog=prog)
    parser.add_argument("--config", default=None, help="YAML file of argument values; command-line options override it.")
    for action in parser._actions:
        if action.type is dict:
            action.type = _json_mapping
    if known.config:
        values = load_yaml(known.config)
        names = {f.name for cls in dataclass_types for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown and not ignore_extra_keys:
            raise ValueError(f"{known.config}: unknown config keys {unknown}")
        values = {key: value for key, value in values.items() if key in names}
        parser.set_defaults(**values)
        for action in parser._actions:  # a value from the YAML satisfies a required argument
            if action.dest in values:
                action.required = False
    outputs = parser.parse_args_into_dataclasses(args=rest + (["--config", known.config] if known.config else []))
    return tuple(outputs[: len(dataclass_types)])
