"""YAML config + command-line overrides -> argument dataclasses (as in TRL's recipes).

``ser-hf train --config recipes/emodb/config.yaml --learning_rate 1e-4``: the YAML sets the defaults,
the command line wins. Unknown YAML keys are an error (a typo must not silently fall back to a default).
"""
from __future__ import annotations

import argparse
import dataclasses
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


def parse_config(dataclass_types: tuple[type, ...], argv: list[str] | None = None, *, prog: str | None = None):
    """Parse ``--config FILE`` plus overrides into instances of ``dataclass_types`` (in order)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    parser = HfArgumentParser(dataclass_types, prog=prog)
    parser.add_argument("--config", default=None, help="YAML file of argument values; command-line options override it.")
    if known.config:
        values = load_yaml(known.config)
        names = {f.name for cls in dataclass_types for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{known.config}: unknown config keys {unknown}")
        parser.set_defaults(**values)
        for action in parser._actions:  # a value from the YAML satisfies a required argument
            if action.dest in values:
                action.required = False
    outputs = parser.parse_args_into_dataclasses(args=rest + (["--config", known.config] if known.config else []))
    return tuple(outputs[: len(dataclass_types)])
