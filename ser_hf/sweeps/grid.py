"""Grid values: command-line ``KEY=V1,V2`` strings checked against the argument dataclasses and
turned into one complete config per run, before anything runs.

Every grid key and value is checked before the first run: unknown keys, values of the wrong type and
values the argument dataclasses reject stop the sweep up front.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Any

from ser_hf.arguments import DataArguments, ModelArguments
from ser_hf.sweeps.runner import Run, show_value as _show

_RESERVED = {"seed": "use --seeds", "output_dir": "use --output_dir", "config": "use --config"}


def argument_dataclasses() -> tuple[type, ...]:
    """The dataclasses a run config fills (data, model, training)."""
    from ser_hf.training_args import SERTrainingArguments

    return DataArguments, ModelArguments, SERTrainingArguments


# ------------------------------------------------------------------------------------------ grid values
def parse_assignments(items: Iterable[str], *, what: str = "--grid", multiple: bool = True) -> dict[str, list[str]]:
    """``["loss=ce,focal", "sampler=up"]`` -> ``{"loss": ["ce", "focal"], "sampler": ["up"]}`` (order kept).

    With ``multiple=False`` (``--set``) the value is taken whole, commas included.
    """
    parsed: dict[str, list[str]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{what} {item!r}: expected KEY=VALUE{',VALUE...' if multiple else ''}")
        values = [v.strip() for v in text.split(",")] if multiple else [text.strip()]
        if any(v == "" for v in values):
            raise ValueError(f"{what} {item!r}: empty value for {key!r}")
        if len(set(values)) != len(values):
            raise ValueError(f"{what} {item!r}: a value of {key!r} is repeated")
        if key in parsed:
            raise ValueError(f"{what}: key {key!r} is given twice")
        parsed[key] = values
    return parsed


def argument_fields() -> dict[str, tuple[type, Any]]:
    """Every settable argument name -> (dataclass, resolved type hint)."""
    fields: dict[str, tuple[type, Any]] = {}
    for cls in argument_dataclasses():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init:
                fields[f.name] = (cls, hints[f.name])
    return fields


def _union_members(hint) -> list:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return list(typing.get_args(hint))
    return [hint]


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise ValueError("not a boolean (true/false)")


def _scalar(member, text: str):
    if member is bool:
        return _bool(text)
    if member is int:
        return int(text)
    if member is float:
        return float(text)
    return text


def convert_value(key: str, text: str, hint) -> Any:
    """A command-line string as the argument's type (int, float, bool, str, list, None).

    ``null`` gives None for optional arguments; ``none`` does too unless the argument takes strings
    (``sampler=none`` and ``eval_split=none`` are meaningful strings). Mapping-valued arguments
    (``backbone_config``, ``corpus_options``) belong in the base config, not in a grid.
    """
    members = _union_members(hint)
    optional = type(None) in members
    members = [m for m in members if m is not type(None)]
    takes_str = any(m is str or (isinstance(m, type) and issubclass(m, Enum)) for m in members)
    if optional and (text.lower() == "null" or (text.lower() == "none" and not takes_str)):
        return None
    errors = []
    for member in sorted(members, key=lambda m: 0 if m is bool else 1 if m is int else 2 if m is float else 3):
        origin = typing.get_origin(member)
        try:
            if member in (bool, int, float):
                return _scalar(member, text)
            if origin is list:
                (item,) = typing.get_args(member) or (str,)
                return [_scalar(item, token) for token in text.split()]
            if member is str or (isinstance(member, type) and issubclass(member, Enum)) or typing.get_origin(member) is typing.Literal:
                return text
        except ValueError as exc:
            errors.append(f"{getattr(member, '__name__', member)}: {exc}")
    if any(m is dict or typing.get_origin(m) is dict for m in members):
        raise ValueError(f"{key} is a mapping; set it in the base config (YAML), it cannot be a grid/--set value")
    raise ValueError(f"value {text!r} of {key} does not fit its type {hint} ({'; '.join(errors) or 'unsupported type'})")


def typed_values(assignments: Mapping[str, list[str]], *, what: str = "--grid") -> dict[str, list[Any]]:
    """Check every key names an argument and convert every value to its type."""
    fields = argument_fields()
    typed: dict[str, list[Any]] = {}
    for key, values in assignments.items():
        if key in _RESERVED:
            raise ValueError(f"{what}: {key!r} is set by the sweep runner; {_RESERVED[key]}")
        if key not in fields:
            close = [name for name in fields if key.replace("-", "_") == name or key in name][:5]
            hint = f" (did you mean {close}?)" if close else ""
            raise ValueError(f"{what}: unknown argument {key!r}{hint}; keys must be DataArguments, ModelArguments or SERTrainingArguments fields")
        typed[key] = [convert_value(key, value, fields[key][1]) for value in values]
    return typed


def check_run_arguments(config: Mapping[str, Any]) -> tuple:
    """Build the argument dataclasses from a full run config (their own checks run) and check the
    choices that are otherwise only noticed deep inside a run (task, corpus, imbalance; the model choices are
    checked by ``ModelArguments`` itself)."""
    from transformers import HfArgumentParser

    from ser_hf.configuration import TASKS
    from ser_hf.data.corpora import get_corpus_spec
    from ser_hf.data.subsample import parse_imbalance

    data_args, model_args, training_args = HfArgumentParser(argument_dataclasses()).parse_dict(dict(config))
    checks = [
        ("modality", model_args.modality, ("speech", "text")),
        ("task", model_args.task, TASKS),
        ("on_invalid_rows", data_args.on_invalid_rows, ("error", "drop")),
    ]
    for name, value, choices in checks:
        if value not in choices:
            raise ValueError(f"{name}={value!r} is not one of {[c for c in choices if c is not None]}")
    spec = get_corpus_spec(data_args.corpus)
    fractions = parse_imbalance(data_args.imbalance)
    labels = data_args.labels or spec.labels
    if fractions and labels and set(fractions) - set(labels):
        raise ValueError(f"imbalance={data_args.imbalance!r} names classes {sorted(set(fractions) - set(labels))} not in {list(labels)}")
    if data_args.test_split is None or data_args.test_split.lower() == "none":
        raise ValueError("an ablation compares test metrics: test_split must name a split")
    return data_args, model_args, training_args



def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", _show(value)).strip("_") or "_"


def cell_slugs(cells: Sequence[tuple[tuple[str, Any], ...]]) -> list[str]:
    """Folder names for cells, readable (``loss-ce_sampler-up``) and unique (a hash is added on a clash)."""
    slugs = ["_".join(f"{k}-{_slug(v)}" for k, v in cell) or "base" for cell in cells]
    clashes = {s for s in slugs if slugs.count(s) > 1 or len(s) > 120}
    out = []
    for slug, cell in zip(slugs, cells):
        if slug in clashes:
            digest = hashlib.sha1(json.dumps(cell, default=str).encode()).hexdigest()[:8]
            slug = f"{slug[:100]}_{digest}"
        out.append(slug)
    return out


def plan_runs(
    base_config: Mapping[str, Any],
    grid: Mapping[str, list[Any]],
    seeds: Sequence[int],
    output_dir: str,
    *,
    fixed: Mapping[str, Any] | None = None,
) -> list[Run]:
    """Every cell x seed, seed-major, each with its complete config; every cell is checked first."""
    output_dir = os.path.abspath(output_dir)
    keys = list(grid)
    cells = [tuple(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    slugs = cell_slugs(cells)
    problems = []
    for cell in cells:
        config = {**base_config, **(fixed or {}), **dict(cell), "seed": int(seeds[0]), "output_dir": output_dir}
        try:
            check_run_arguments(config)
        except (ValueError, TypeError) as exc:
            label = " ".join(f"{k}={_show(v)}" for k, v in cell) or "base config"
            problems.append(f"{label}: {exc}")
    if problems:
        raise ValueError("invalid ablation settings (nothing was run):\n  " + "\n  ".join(problems))
    runs = []
    for seed in seeds:
        for cell, slug in zip(cells, slugs):
            run_dir = os.path.join(output_dir, "runs", slug, f"seed{seed}")
            config = {**base_config, **(fixed or {}), **dict(cell), "seed": int(seed), "output_dir": run_dir}
            runs.append(Run(cell=cell, seed=int(seed), run_dir=run_dir, config=config))
    return runs

