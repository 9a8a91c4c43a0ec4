"""Imports point downward: data/ and modeling/ never import the trainer, experiment or commands, and
the trainer, fine-tuning policies and model cards no longer import each other in a circle."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ser_hf"


def imported_modules(path: Path) -> set[str]:
    """Every ser_hf module a file imports, at top level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("ser_hf")}


def test_lower_layers_never_import_upper_ones():
    upper = ("ser_hf.trainer", "ser_hf.experiment", "ser_hf.commands")  # the project's rule (common brief)
    for folder in ("data", "modeling"):
        for path in (PACKAGE / folder).rglob("*.py"):
            bad = {m for m in imported_modules(path) if m.startswith(upper)}
            assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


def test_no_trainer_finetuning_hub_cycle():
    assert "ser_hf.trainer" not in imported_modules(PACKAGE / "finetuning.py")
    assert "ser_hf.trainer" not in imported_modules(PACKAGE / "hub.py")
    from ser_hf.modeling.parameters import count_parameters, parameter_part
    from ser_hf.trainer import _parameter_part
    from ser_hf.trainer import count_parameters as old_name

    assert old_name is count_parameters and _parameter_part is parameter_part  # old names still importable
    assert [parameter_part(n) for n in ("backbone.encoder.w", "pooling.attention", "layer_weights", "head.out")] == [
        "backbone", "pooling", "pooling", "head"]
