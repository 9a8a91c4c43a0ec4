"""Ablation: train every combination of a grid of training settings over several seeds, then
tabulate and plot mean ± std per combination (`ser-hf ablate`). Runs are ordered seed-major (every
cell with the first seed, then the next seed), so a partial sweep covers every cell early."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ser_hf.config_parser import load_yaml
from ser_hf.io import write_json_atomic
from ser_hf.sweeps.grid import argument_fields, plan_runs, typed_values
from ser_hf.sweeps.reports import OUTPUT_FILES, write_reports
from ser_hf.sweeps.runner import Run, SweepCounts, load_result, resolve_devices, run_sweep, stale_runs

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
    devices: str | Sequence[str] | None = "auto",
    jobs: int | None = None,
    launcher: str = "auto",
    max_runs: int | None = None,
    run_timeout: float | None = None,
    retry_failed: bool = True,
    metric: str | None = None,
    compare: str | None = None,
    dry_run: bool = False,
    command: str | None = None,
    progress: Callable[[str], None] = print,
) -> AblationReport:
    """Validate the grid, run what is unfinished, write the tables and chart, return everything.

    ``grid`` and ``fixed`` hold command-line strings (``{"loss": ["ce", "focal"]}``); ``fixed``
    values apply to every run. ``config`` is the base YAML (path or mapping).
    """
    base = load_yaml(config) if isinstance(config, (str, os.PathLike)) else dict(config)
    fields = argument_fields()
    unknown = sorted(set(base) - set(fields))
    if unknown:
        raise ValueError(f"{config}: unknown config keys {unknown}")
    typed_grid = typed_values(grid)
    typed_fixed = {k: v[0] for k, v in typed_values(fixed or {}, what="--set").items()}
    overlap = sorted(set(typed_grid) & set(typed_fixed))
    if overlap:
        raise ValueError(f"keys {overlap} are both grid axes and --set values")
    if compare is not None and compare not in typed_grid:
        raise ValueError(f"--compare {compare!r} is not a grid key ({list(typed_grid)})")
    seeds = list(seeds) if seeds else [int(base.get("seed", 42))]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat: {seeds}")
    if output_dir is None:
        stem = os.path.splitext(os.path.basename(config))[0] if isinstance(config, (str, os.PathLike)) else "config"
        output_dir = os.path.join("ablations", stem)
    output_dir = os.path.abspath(output_dir)
    runs = plan_runs(base, typed_grid, seeds, output_dir, fixed=typed_fixed)
    stale = stale_runs(runs)
    if stale:
        raise ValueError(
            f"{len(stale)} finished runs in {output_dir} were made with a different config (e.g. {stale[0]}); "
            "use another --output_dir or delete them"
        )
    device_list = resolve_devices(devices)
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
        counts = run_sweep(
            runs, devices=device_list, jobs=jobs, launcher=launcher, max_runs=max_runs, run_timeout=run_timeout,
            retry_failed=retry_failed, progress=progress,
        )
    written = write_reports(output_dir, runs, list(typed_grid), metric=metric, compare=compare, command=command)
    progress(
        f"[ablate] tables: {os.path.join(output_dir, OUTPUT_FILES['summary_md'])} ({written['counts']['ok']} ok, "
        f"{written['counts']['failed']} failed, {written['counts']['missing']} missing)"
        + (f"; chart: {written['chart']}" if written["chart"] else "")
    )
    return AblationReport(output_dir, runs, counts, written["results"], written["summary"], written["metric"], written["chart"])

