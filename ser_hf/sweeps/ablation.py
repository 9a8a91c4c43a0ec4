"""Ablation: train every combination of a grid of training settings over several seeds, then
tabulate and plot mean ± std per combination (`ser-hf ablate`). Runs are ordered seed-major (every
cell with the first seed, then the next seed), so a partial sweep covers every cell early."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ser_hf.io import write_json_atomic
from ser_hf.sweeps.grid import plan_runs, typed_values
from ser_hf.sweeps.reports import OUTPUT_FILES, write_reports
from ser_hf.sweeps.runner import Run, SweepCounts, SweepEngine, load_result, plan_sweep, refuse_stale, resolve_devices

# ------------------------------------------------------------------------------------------ one call
@dataclasses.dataclass
class AblationReport:
    output_dir: str
    runs: list[Run]
    counts: SweepCounts
    results: list[dict]
    summary: list[dict]
    metric: str
    chart: str | None


def run_ablation(
    config: str | Mapping[str, Any],
    grid: Mapping[str, Sequence[str]],
    *,
    seeds: Sequence[int] | None = None,
    output_dir: str | None = None,
    fixed: Mapping[str, Sequence[str]] | None = None,
    engine: SweepEngine | None = None,
    metric: str | None = None,
    compare: str | None = None,
    dry_run: bool = False,
    command: str | None = None,
) -> AblationReport:
    """Validate the grid, run what is unfinished, write the tables and chart, return everything.

    ``grid`` and ``fixed`` hold command-line strings (``{"loss": ["ce", "focal"]}``); ``fixed``
    values apply to every run. ``config`` is the base YAML (path or mapping); ``engine`` says where and
    how the runs go (and where progress lines are printed).
    """
    engine = engine or SweepEngine()
    progress = engine.progress
    plan = plan_sweep(config, fixed, seeds, output_dir, default_root="ablations")
    base, typed_fixed, seeds, output_dir = plan.base, plan.fixed, plan.seeds, plan.output_dir
    typed_grid = typed_values(grid)
    overlap = sorted(set(typed_grid) & set(typed_fixed))
    if overlap:
        raise ValueError(f"keys {overlap} are both grid axes and --set values")
    if compare is not None and compare not in typed_grid:
        raise ValueError(f"--compare {compare!r} is not a grid key ({list(typed_grid)})")
    runs = plan_runs(base, typed_grid, seeds, output_dir, fixed=typed_fixed)
    refuse_stale(runs, output_dir)
    resolve_devices(engine.devices)  # a bad --devices fails before anything is written
    write_json_atomic(
        os.path.join(output_dir, OUTPUT_FILES["plan"]),
        {"command": command, "base_config": base, "grid": list(typed_grid.items()), "fixed": typed_fixed, "seeds": seeds,
         "runs": [r.run_dir for r in runs]},
    )
    counts = SweepCounts(planned=len(runs))
    if dry_run:
        for run in runs:
            state = (load_result(run) or {}).get("status", "to run")
            progress(f"[ablate] {run.run_id}: {state}")
    else:
        counts = engine.run(runs, tag="ablate")
    written = write_reports(output_dir, runs, list(typed_grid), metric=metric, compare=compare, command=command)
    progress(
        f"[ablate] tables: {os.path.join(output_dir, OUTPUT_FILES['summary_md'])} ({written['counts']['ok']} ok, "
        f"{written['counts']['failed']} failed, {written['counts']['missing']} missing)"
        + (f"; chart: {written['chart']}" if written["chart"] else "")
    )
    return AblationReport(output_dir, runs, counts, written["results"], written["summary"], written["metric"], written["chart"])

