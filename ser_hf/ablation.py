"""Kept for old imports: the ablation runner now lives in ``ser_hf.sweeps`` (engine in
``sweeps.runner``, grid values in ``sweeps.grid``, numbers in ``sweeps.statistics``, tables in
``sweeps.reports``, charts in ``sweeps.plots``, the ablate sweep in ``sweeps.ablation``)."""
from __future__ import annotations

import sys

from ser_hf.sweeps.ablation import AblationReport, run_ablation
from ser_hf.sweeps.grid import (
    argument_dataclasses,
    argument_fields,
    cell_slugs,
    check_run_arguments,
    convert_value,
    parse_assignments,
    plan_runs,
    typed_values,
)
from ser_hf.sweeps.plots import plot_summary
from ser_hf.sweeps.reports import OUTPUT_FILES, effects_markdown, mean_std, summary_markdown, write_reports
from ser_hf.sweeps.runner import (
    CONFIG_FILE,
    ERROR_FILE,
    LOG_FILE,
    METRICS_FILE,
    RESULT_FILE,
    Run,
    SweepCounts,
    collect_results,
    execute_run,
    load_result,
    resolve_devices,
    run_sweep,
    stale_runs,
)
from ser_hf.sweeps.statistics import METRIC_LABELS, SCORE_METRICS, choose_metric, paired_effects, summarize

__all__ = [
    "AblationReport", "CONFIG_FILE", "ERROR_FILE", "LOG_FILE", "METRICS_FILE", "METRIC_LABELS", "OUTPUT_FILES",
    "RESULT_FILE", "Run", "SCORE_METRICS", "SweepCounts", "argument_dataclasses", "argument_fields", "cell_slugs",
    "check_run_arguments", "choose_metric", "collect_results", "convert_value", "effects_markdown", "execute_run",
    "load_result", "mean_std", "paired_effects", "parse_assignments", "plan_runs", "plot_summary", "resolve_devices",
    "run_ablation", "run_sweep", "stale_runs", "summarize", "summary_markdown", "typed_values", "write_reports",
]  # fmt: skip

if __name__ == "__main__":  # old entry point of a fresh-interpreter run
    sys.exit(execute_run(sys.argv[1]))
