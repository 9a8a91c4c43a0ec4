"""Ablation runner: train every combination of a grid of training settings over several seeds,
then tabulate and plot mean ± std per combination.

Why it looks the way it does:

* Each run is ``ser_hf.experiment.train`` in its **own process**, so a crash or an out-of-memory
  kill ends one run, not the sweep; the failure is recorded (error summary + log path) in the table.
  On a CPU-only machine the processes are forked from a server that has already imported torch and
  transformers (``multiprocessing`` "forkserver"), which saves the ~10 CPU-seconds of imports per
  run; with GPUs every run is a fresh interpreter with ``CUDA_VISIBLE_DEVICES`` set to its device.
* Every run has its own folder ``<output_dir>/runs/<cell>/seed<k>`` holding ``config.yaml`` (a
  complete config: ``ser-hf train --config <run>/config.yaml`` repeats the run), ``train.log`` and,
  once finished, ``result.json`` (written atomically, last). A run with a successful
  ``result.json`` (or a ``test_metrics.json``) is skipped, so a killed sweep resumes where it stopped;
  failed runs are retried unless asked not to. Runs are ordered seed-major (every cell with the first
  seed, then the next seed), so a partial sweep covers every cell early.
* Every grid key and value is checked before the first run: unknown keys, values of the wrong type
  and values the argument dataclasses reject stop the sweep up front.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from typing import Any

import yaml

from ser_hf.arguments import DataArguments, ModelArguments
from ser_hf.config_parser import load_yaml
from ser_hf.io import write_csv_atomic, write_json_atomic, write_text_atomic

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"
CONFIG_FILE = "config.yaml"
LOG_FILE = "train.log"
ERROR_FILE = "error.json"
METRICS_FILE = "test_metrics.json"  # written by ser_hf.experiment.train
OUTPUT_FILES = {
    "results": "results.csv",
    "summary_csv": "summary.csv",
    "summary_md": "summary.md",
    "chart": "summary.png",
    "plan": "ablation.json",
}
# Score columns, in the order tables show them; the first present one is the default primary metric.
SCORE_METRICS = ("macro_f1", "uar", "accuracy", "micro_f1", "ccc_mean", "ccc_arousal", "ccc_valence", "ccc_dominance")
METRIC_LABELS = {"macro_f1": "macro-F1", "uar": "UAR", "accuracy": "accuracy", "micro_f1": "micro-F1", "ccc_mean": "mean CCC"}
# Keys the runner sets itself.
_RESERVED = {"seed": "use --seeds", "output_dir": "use --output_dir", "config": "use --config"}
# Modules the CPU fork server imports once for all runs.
_PRELOAD = ["ser_hf.experiment", "ser_hf.trainer", "ser_hf.modeling", "ser_hf.data.corpora", "ser_hf.data.subsample"]


def _dataclass_types() -> tuple[type, ...]:
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
    for cls in _dataclass_types():
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
            raise ValueError(f"{what}: {key!r} is set by the ablation runner; {_RESERVED[key]}")
        if key not in fields:
            close = [name for name in fields if key.replace("-", "_") == name or key in name][:5]
            hint = f" (did you mean {close}?)" if close else ""
            raise ValueError(f"{what}: unknown argument {key!r}{hint}; keys must be DataArguments, ModelArguments or SERTrainingArguments fields")
        typed[key] = [convert_value(key, value, fields[key][1]) for value in values]
    return typed


def check_run_arguments(config: Mapping[str, Any]) -> tuple:
    """Build the argument dataclasses from a full run config (their own checks run) and check the
    choices that are otherwise only noticed deep inside a run (activation, pooling, corpus, imbalance)."""
    from transformers import HfArgumentParser

    from ser_hf.configuration import LAYER_WEIGHTINGS, POOLINGS, TASKS
    from ser_hf.data.corpora import get_corpus_spec
    from ser_hf.data.subsample import parse_imbalance
    from ser_hf.modeling.heads import ACTIVATIONS

    data_args, model_args, training_args = HfArgumentParser(_dataclass_types()).parse_dict(dict(config))
    checks = [
        ("modality", model_args.modality, ("speech", "text")),
        ("task", model_args.task, TASKS),
        ("pooling", model_args.pooling, (None, *POOLINGS)),
        ("layer_weighting", model_args.layer_weighting, LAYER_WEIGHTINGS),
        ("activation", model_args.activation.lower(), tuple(ACTIVATIONS)),
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


# ------------------------------------------------------------------------------------------ the plan
@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of the sweep: a grid cell (ordered ``(key, value)`` pairs) and a seed."""

    cell: tuple[tuple[str, Any], ...]
    seed: int
    run_dir: str
    config: dict

    @property
    def cell_label(self) -> str:
        return " ".join(f"{k}={_show(v)}" for k, v in self.cell)

    @property
    def run_id(self) -> str:
        return f"{os.path.basename(os.path.dirname(self.run_dir))}/seed{self.seed}"


def _show(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(map(str, value))
    return "none" if value is None else str(value)


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


# ------------------------------------------------------------------------------------------ run state
def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _comparable(config: Mapping[str, Any]) -> dict:
    return {k: v for k, v in config.items() if k != "output_dir"}


def load_result(run: Run) -> dict | None:
    """The run's recorded result, or None if it has not finished.

    A ``test_metrics.json`` without ``result.json`` (killed just after training) counts as finished;
    the result is recorded from it.
    """
    result = _read_json(os.path.join(run.run_dir, RESULT_FILE))
    if result is not None:
        return result
    metrics = _read_json(os.path.join(run.run_dir, METRICS_FILE))
    if metrics is not None and os.path.isfile(os.path.join(run.run_dir, CONFIG_FILE)):
        result = _result_record(run, "ok", metrics=metrics, seconds=None)
        write_json_atomic(os.path.join(run.run_dir, RESULT_FILE), result)
        return result
    return None


def _result_record(run: Run, status: str, *, metrics=None, seconds=None, error=None) -> dict:
    return {
        "status": status,
        "cell": {k: v for k, v in run.cell},
        "seed": run.seed,
        "metrics": metrics or {},
        "seconds": seconds,
        "error": error,
        "log": os.path.join(run.run_dir, LOG_FILE),
        "config": _comparable(run.config),
    }


def stale_runs(runs: Sequence[Run]) -> list[str]:
    """Successful runs whose saved config differs from the planned one (the base config changed),
    which would otherwise be skipped and mixed into the table silently."""
    stale = []
    for run in runs:
        saved = _read_json(os.path.join(run.run_dir, RESULT_FILE))
        if saved is None or saved.get("status") != "ok" or saved.get("config") is None:
            continue
        if json.loads(json.dumps(saved["config"], default=str)) != json.loads(json.dumps(_comparable(run.config), default=str)):
            stale.append(run.run_dir)
    return stale


# ------------------------------------------------------------------------------------------ executing
def execute_run(run_dir: str) -> int:
    """Train the run described by ``<run_dir>/config.yaml`` (in the current process); 0 on success.

    On an exception the traceback goes to the log and a one-line summary to ``error.json``.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    try:
        from ser_hf.config_parser import parse_config
        from ser_hf.experiment import train

        args = parse_config(_dataclass_types(), ["--config", os.path.join(run_dir, CONFIG_FILE)])
        train(*args)
        return 0
    except (Exception, SystemExit) as exc:  # noqa: BLE001 -- any failure is recorded; SystemExit: argparse
        traceback.print_exc()
        message = str(exc).strip().splitlines()
        summary = f"{type(exc).__name__}: {message[0] if message else ''}"[:300]
        write_json_atomic(os.path.join(run_dir, ERROR_FILE), {"error": summary})
        return 1


def _fork_target(run_dir: str, log_path: str) -> None:
    """Body of a forked run: its stdout/stderr go to the run's log."""
    with open(log_path, "ab", buffering=0) as log:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    code = execute_run(run_dir)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


class _Launcher:
    """Starts runs in child processes: forked from a preloaded server (CPU) or fresh interpreters (GPU)."""

    def __init__(self, kind: str, timeout: float | None):
        if kind not in ("fork", "subprocess"):
            raise ValueError(f"launcher must be fork or subprocess, got {kind!r}")
        self.kind, self.timeout = kind, timeout
        self.stopping = False  # set when the sweep is interrupted: killed runs are not failures
        self._children: set = set()
        self._lock = threading.Lock()
        if kind == "fork":
            import multiprocessing

            self.context = multiprocessing.get_context("forkserver")
            self.context.set_forkserver_preload(_PRELOAD)

    def run(self, run: Run, device: str | None) -> tuple[int | None, str | None]:
        """Exit code (None: timed out) and a reason when the process did not exit normally."""
        log_path = os.path.join(run.run_dir, LOG_FILE)
        if self.kind == "fork":
            child = self.context.Process(target=_fork_target, args=(run.run_dir, log_path), daemon=False)
            with self._lock:
                self._children.add(child)
            try:
                child.start()
                child.join(self.timeout)
                if child.is_alive():
                    child.kill()
                    child.join()
                    return None, f"timed out after {self.timeout:.0f} s"
                return child.exitcode, None
            finally:
                with self._lock:
                    self._children.discard(child)
        env = dict(os.environ)
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = "" if device == "cpu" else device
        with open(log_path, "ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "ser_hf.ablation", run.run_dir], stdout=log, stderr=subprocess.STDOUT, env=env
            )
            with self._lock:
                self._children.add(child)
            try:
                return child.wait(self.timeout), None
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                return None, f"timed out after {self.timeout:.0f} s"
            finally:
                with self._lock:
                    self._children.discard(child)

    def kill_all(self) -> None:
        with self._lock:
            self.stopping = True
            children = list(self._children)
        for child in children:
            child.kill()


def _failure_reason(run: Run, code: int | None, reason: str | None) -> str:
    error = _read_json(os.path.join(run.run_dir, ERROR_FILE))
    if error and error.get("error"):
        return error["error"]
    if reason:
        return reason
    if code is not None and code < 0:
        return f"killed by signal {-code}" + (" (out of memory?)" if -code == 9 else "")
    if code == 0:
        return f"finished without {METRICS_FILE}"
    return f"exit code {code}"


def _do_run(run: Run, launcher: _Launcher, device: str | None) -> dict | None:
    """Prepare the run folder, run it in a child process and record its result atomically.

    A run killed because the sweep was interrupted gets no result: it is simply unfinished."""
    os.makedirs(run.run_dir, exist_ok=True)
    for name in (RESULT_FILE, ERROR_FILE, METRICS_FILE):
        if os.path.exists(os.path.join(run.run_dir, name)):
            os.remove(os.path.join(run.run_dir, name))
    write_text_atomic(os.path.join(run.run_dir, CONFIG_FILE), yaml.safe_dump(run.config, sort_keys=False))
    with open(os.path.join(run.run_dir, LOG_FILE), "a", encoding="utf-8") as log:
        log.write(f"\n===== ser-hf ablate: {run.cell_label} seed={run.seed} device={device or 'cpu'} {time.ctime()}\n")
    start = time.time()
    code, reason = launcher.run(run, device)
    seconds = round(time.time() - start, 1)
    if launcher.stopping:
        return None
    metrics = _read_json(os.path.join(run.run_dir, METRICS_FILE))
    if code == 0 and metrics is not None:
        result = _result_record(run, "ok", metrics=metrics, seconds=seconds)
    else:
        result = _result_record(run, "failed", seconds=seconds, error=_failure_reason(run, code, reason))
    write_json_atomic(os.path.join(run.run_dir, RESULT_FILE), result)
    return result


def resolve_devices(devices: str | Sequence[str] | None) -> list[str]:
    """``auto`` -> every visible GPU, else ``["cpu"]``; ``"0,1"`` -> ``["0", "1"]``; ``cpu`` -> ``["cpu"]``."""
    if devices is None or devices == "auto" or devices == ["auto"]:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [str(i) for i in range(count)] or ["cpu"]
    items = devices.split(",") if isinstance(devices, str) else list(devices)
    items = [d.strip() for d in items if d.strip()]
    if not items:
        raise ValueError("--devices is empty")
    for device in items:
        if device != "cpu" and not re.fullmatch(r"\d+|GPU-[0-9a-fA-F-]+|MIG-[0-9a-zA-Z/-]+", device):
            raise ValueError(f"--devices entry {device!r} is neither 'cpu' nor a GPU index/UUID")
    return items


@dataclasses.dataclass
class SweepCounts:
    planned: int = 0
    skipped: int = 0  # already finished before this invocation
    ran: int = 0
    ok: int = 0
    failed: int = 0
    not_run: int = 0  # left for a later invocation (max_runs) or interrupted


def run_sweep(
    runs: Sequence[Run],
    *,
    devices: Sequence[str] = ("cpu",),
    jobs: int | None = None,
    launcher: str = "auto",
    max_runs: int | None = None,
    run_timeout: float | None = None,
    retry_failed: bool = True,
    progress: Callable[[str], None] = print,
) -> SweepCounts:
    """Run every unfinished run; returns what happened. Finished runs are not touched."""
    counts = SweepCounts(planned=len(runs))
    todo = []
    for run in runs:
        result = load_result(run)
        if result is not None and (result["status"] == "ok" or not retry_failed):
            counts.skipped += 1
        else:
            todo.append(run)
    if max_runs is not None:
        counts.not_run = max(0, len(todo) - max_runs)
        todo = todo[:max_runs]
    gpus = [d for d in devices if d != "cpu"]
    if launcher == "auto":
        launcher = "subprocess" if gpus else "fork"
    jobs = jobs or max(1, len(devices))
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    progress(
        f"[ablate] {counts.planned} runs planned: {counts.skipped} already finished, {len(todo)} to run now"
        + (f", {counts.not_run} left for later (max_runs={max_runs})" if counts.not_run else "")
        + f"; {jobs} at a time on {','.join(devices)}"
    )
    if not todo:
        return counts
    runner = _Launcher(launcher, run_timeout)
    free = list(devices) * max(1, -(-jobs // len(devices)))
    lock = threading.Lock()
    started = time.time()

    def work(run: Run) -> None:
        with lock:
            device = free.pop(0)
        try:
            result = _do_run(run, runner, None if device == "cpu" and launcher == "fork" else device)
        finally:
            with lock:
                free.append(device)
        if result is None:  # the sweep was interrupted while this run trained
            return
        with lock:
            done = counts.ran + 1
            counts.ran = done
            if result["status"] == "ok":
                counts.ok += 1
                score = _primary_of(result["metrics"])
                status = "ok" + (f" {score[0]}={score[1]:.4f}" if score else "")
            else:
                counts.failed += 1
                status = f"FAILED ({result.get('error')}; log {os.path.join(run.run_dir, LOG_FILE)})"
            elapsed = time.time() - started
            eta = elapsed / done * (len(todo) - done)
            progress(
                f"[ablate] {done}/{len(todo)} {run.cell_label} seed={run.seed}: {status} "
                f"({result.get('seconds')} s) | ok {counts.ok}, failed {counts.failed}, "
                f"elapsed {_duration(elapsed)}, ETA {_duration(eta)}"
            )

    pool = ThreadPoolExecutor(max_workers=jobs)
    previous = _sigterm_as_interrupt()
    try:
        for future in [pool.submit(work, run) for run in todo]:
            future.result()
    except BaseException:
        runner.kill_all()
        pool.shutdown(wait=True, cancel_futures=True)
        counts.not_run += len(todo) - counts.ran
        progress(f"[ablate] interrupted: {counts.ran} runs done, {len(todo) - counts.ran} left; rerun the same command to resume")
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    pool.shutdown(wait=True)
    return counts


def _sigterm_as_interrupt():
    """Make ``kill PID`` of a (nohup'd) sweep stop it like Ctrl-C, so its children are killed too."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    return signal.signal(signal.SIGTERM, handler)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _primary_of(metrics: Mapping[str, Any]) -> tuple[str, float] | None:
    for name in SCORE_METRICS:
        if isinstance(metrics.get(name), (int, float)):
            return name, float(metrics[name])
    return None


# ------------------------------------------------------------------------------------------ tables
def collect_results(runs: Sequence[Run]) -> list[dict]:
    """One row per planned run: status ok / failed / missing, its metrics, time, error and log."""
    rows = []
    for run in runs:
        result = _read_json(os.path.join(run.run_dir, RESULT_FILE))
        row = {"run": run.run_id, **{k: _show(v) for k, v in run.cell}, "seed": run.seed}
        if result is None:
            row.update(status="missing", metrics={}, seconds=None, error=None, log=None)
        else:
            row.update(
                status=result["status"], metrics=result.get("metrics") or {}, seconds=result.get("seconds"),
                error=result.get("error"), log=result.get("log"),
            )
        row["run_dir"] = run.run_dir
        rows.append(row)
    return rows


def choose_metric(results: Sequence[dict], metric: str | None = None) -> str:
    """The primary metric: the one asked for, else macro-F1 (categorical) or mean CCC (attributes)."""
    present = {name for row in results for name, value in row["metrics"].items() if isinstance(value, (int, float))}
    if metric is not None:
        if present and metric not in present:
            raise ValueError(f"metric {metric!r} is not among the run metrics {sorted(present)}")
        return metric
    for name in ("macro_f1", "ccc_mean", *SCORE_METRICS):
        if name in present:
            return name
    return min(present) if present else "macro_f1"


def summarize(results: Sequence[dict], grid_keys: Sequence[str], metrics: Sequence[str]) -> list[dict]:
    """Per cell (in plan order): runs ok/failed/missing, and mean and sample std over seeds of each metric."""
    cells: dict[tuple, list[dict]] = {}
    for row in results:
        cells.setdefault(tuple(row[k] for k in grid_keys), []).append(row)
    summary = []
    for key, rows in cells.items():
        ok = [r for r in rows if r["status"] == "ok"]
        entry = {**dict(zip(grid_keys, key)), "n_ok": len(ok), "n_failed": sum(r["status"] == "failed" for r in rows),
                 "n_missing": sum(r["status"] == "missing" for r in rows), "seeds": " ".join(str(r["seed"]) for r in ok)}
        for name in metrics:
            values = [float(r["metrics"][name]) for r in ok if isinstance(r["metrics"].get(name), (int, float))]
            entry[f"{name}_mean"] = sum(values) / len(values) if values else math.nan
            entry[f"{name}_std"] = (
                math.sqrt(sum((v - entry[f"{name}_mean"]) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else math.nan
            )
        entry["errors"] = "; ".join(f"seed {r['seed']}: {r['error']}" for r in rows if r["status"] == "failed")
        summary.append(entry)
    return summary


def _fmt(value: float, digits: int = 4) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def mean_std(entry: Mapping[str, Any], metric: str, digits: int = 3) -> str:
    """``"0.412 ± 0.031 (3)"``; a cell without a successful run gives ``"failed"`` or ``"missing"``."""
    mean, std = entry[f"{metric}_mean"], entry[f"{metric}_std"]
    if math.isnan(mean):
        return "failed" if entry["n_failed"] else "missing"
    spread = f" ± {std:.{digits}f}" if not math.isnan(std) else ""
    return f"{mean:.{digits}f}{spread} ({entry['n_ok']})"


def summary_markdown(
    summary: Sequence[dict],
    grid_keys: Sequence[str],
    metrics: Sequence[str],
    *,
    compare: str | None = None,
    title: str | None = None,
    notes: Sequence[str] = (),
) -> str:
    """Markdown table of mean ± std (runs) per cell; the best mean of each column in bold.

    With ``compare`` (a grid key), its values become columns side by side (e.g. original vs.
    imbalanced training data), one column group per metric.
    """
    lines = [f"# {title}", ""] if title else []
    lines += list(notes) + ([""] if notes else [])
    row_keys = [k for k in grid_keys if k != compare]
    columns: list[tuple[str, str | None]] = []
    compare_values = list(dict.fromkeys(e[compare] for e in summary)) if compare else [None]
    for metric in metrics:
        columns += [(metric, v) for v in compare_values]
    groups: dict[tuple, dict] = {}
    for entry in summary:
        groups.setdefault(tuple(entry[k] for k in row_keys), {})[entry[compare] if compare else None] = entry
    best = {}
    for metric, value in columns:
        means = [g[value][f"{metric}_mean"] for g in groups.values() if value in g and not math.isnan(g[value][f"{metric}_mean"])]
        best[(metric, value)] = max(means) if means else None
    header = [*row_keys] + [
        f"{METRIC_LABELS.get(m, m)}" + (f" ({compare}={v})" if compare else "") for m, v in columns
    ]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for key, group in groups.items():
        cells = list(key)
        for metric, value in columns:
            entry = group.get(value)
            if entry is None:
                cells.append("")
                continue
            text = mean_std(entry, metric)
            if best[(metric, value)] is not None and entry[f"{metric}_mean"] == best[(metric, value)]:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    failures = [e for e in summary if e["errors"]]
    if failures:
        lines += ["", "Failed runs:", ""]
        for entry in failures:
            label = " ".join(f"{k}={entry[k]}" for k in grid_keys)
            lines.append(f"- {label}: {entry['errors']}")
    missing = [e for e in summary if e["n_missing"]]
    if missing:
        lines += ["", f"Missing runs (not run yet): {sum(e['n_missing'] for e in missing)} in {len(missing)} cells."]
    return "\n".join(lines) + "\n"


def paired_effects(
    results: Sequence[dict], grid_keys: Sequence[str], metric: str, *, compare: str | None = None
) -> list[dict]:
    """How much each grid value changes ``metric`` against the key's first value, paired.

    For key K with first value a and another value b, every pair of successful runs that differ only
    in K (same other settings, same seed) gives one difference score(b) - score(a). Pairing removes
    the spread that seeds and the other settings add, which a difference of cell means keeps. With
    ``compare`` the effects are computed separately for each of its values.
    """
    def score(row):
        value = row["metrics"].get(metric)
        return float(value) if row["status"] == "ok" and isinstance(value, (int, float)) else None

    groups = list(dict.fromkeys(r[compare] for r in results)) if compare else [None]
    effects = []
    for group in groups:
        rows = [r for r in results if compare is None or r[compare] == group]
        for key in grid_keys:
            if key == compare:
                continue
            values = list(dict.fromkeys(r[key] for r in rows))
            others = [k for k in grid_keys if k not in (key, compare)]
            index = {(r[key], tuple(r[k] for k in others), r["seed"]): score(r) for r in rows}
            for value in values[1:]:
                diffs = []
                for (v, rest, seed), s in index.items():
                    base = index.get((values[0], rest, seed))
                    if v == value and s is not None and base is not None:
                        diffs.append(s - base)
                mean = sum(diffs) / len(diffs) if diffs else math.nan
                std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) if len(diffs) > 1 else math.nan
                effects.append({
                    "group": group, "key": key, "value": value, "baseline": values[0], "pairs": len(diffs),
                    "mean_diff": mean, "std_diff": std, "better": sum(d > 0 for d in diffs),
                })
    return effects


def effects_markdown(effects: Sequence[dict], metric: str, *, compare: str | None = None) -> str:
    """The `paired_effects` as a Markdown table."""
    label = METRIC_LABELS.get(metric, metric)
    header = ([compare] if compare else []) + ["setting", "vs.", f"mean Δ {label} ± std", "better in (pairs)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in effects:
        diff = "n/a" if math.isnan(e["mean_diff"]) else f"{e['mean_diff']:+.3f}" + (
            "" if math.isnan(e["std_diff"]) else f" ± {e['std_diff']:.3f}"
        )
        cells = ([e["group"]] if compare else []) + [
            f"{e['key']}={e['value']}", f"{e['key']}={e['baseline']}", diff, f"{e['better']}/{e['pairs']}"
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_summary(
    path: str,
    summary: Sequence[dict],
    grid_keys: Sequence[str],
    metric: str,
    *,
    compare: str | None = None,
    title: str | None = None,
) -> str:
    """Bar chart: one bar per cell (mean over seeds, std error bars); with ``compare`` one series per value."""
    from ser_hf.plotting import bar_chart

    row_keys = [k for k in grid_keys if k != compare] or list(grid_keys)
    categories = list(dict.fromkeys(" / ".join(e[k] for k in row_keys) for e in summary))
    series_names = list(dict.fromkeys(e[compare] for e in summary)) if compare else [METRIC_LABELS.get(metric, metric)]
    series = {name: [math.nan] * len(categories) for name in series_names}
    errors = {name: [math.nan] * len(categories) for name in series_names}
    for entry in summary:
        name = entry[compare] if compare else series_names[0]
        index = categories.index(" / ".join(entry[k] for k in row_keys))
        series[name][index] = entry[f"{metric}_mean"]
        errors[name][index] = entry[f"{metric}_std"]
    if compare:
        series = {f"{compare}={k}": v for k, v in series.items()}
        errors = {f"{compare}={k}": v for k, v in errors.items()}
    seeds = max((e["n_ok"] + e["n_failed"] + e["n_missing"] for e in summary), default=0)
    label = METRIC_LABELS.get(metric, metric)
    return bar_chart(
        path,
        categories,
        series,
        errors=errors,
        title=title or f"Test {label} by {' / '.join(row_keys)}\nmean ± std over {seeds} seed{'s' if seeds != 1 else ''}",
        ylabel=f"test {label}",
    )


def write_reports(
    output_dir: str,
    runs: Sequence[Run],
    grid_keys: Sequence[str],
    *,
    metric: str | None = None,
    compare: str | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """results.csv, summary.csv, summary.md and the bar chart from whatever results exist now."""
    results = collect_results(runs)
    metric = choose_metric(results, metric)
    present = [m for m in SCORE_METRICS if any(m in r["metrics"] for r in results)]
    table_metrics = [metric] + [m for m in present if m != metric]
    summary = summarize(results, grid_keys, table_metrics)
    metric_columns = table_metrics + sorted({k for r in results for k in r["metrics"]} - set(table_metrics) - _NOISE)
    # "loss" is both a grid key and the test loss: metric columns never reuse a grid key's name.
    metric_names = [f"test_{m}" if m in grid_keys or m == "loss" else m for m in metric_columns]
    header = ["run", *grid_keys, "seed", "status", *metric_names, "seconds", "error", "log", "run_dir"]
    write_csv_atomic(
        os.path.join(output_dir, OUTPUT_FILES["results"]),
        header,
        [[r["run"], *(r[k] for k in grid_keys), r["seed"], r["status"],
          *(_fmt(r["metrics"].get(m), 6) if isinstance(r["metrics"].get(m), (int, float)) else "" for m in metric_columns),
          "" if r["seconds"] is None else r["seconds"], r["error"] or "", r["log"] or "", r["run_dir"]] for r in results],
    )
    summary_header = [*grid_keys, "n_ok", "n_failed", "n_missing", "seeds"] + [
        f"{m}_{s}" for m in table_metrics for s in ("mean", "std")
    ] + ["errors"]
    write_csv_atomic(
        os.path.join(output_dir, OUTPUT_FILES["summary_csv"]),
        summary_header,
        [[_fmt(e[c], 6) if isinstance(e[c], float) else e[c] for c in summary_header] for e in summary],
    )
    shown = [metric] + (["uar"] if metric == "macro_f1" and "uar" in present else [])
    shown += [m for m in ("ccc_arousal", "ccc_valence", "ccc_dominance") if metric == "ccc_mean" and m in present]
    notes = [f"Command: `{command}`", ""] if command else []
    counts = {s: sum(r["status"] == s for r in results) for s in ("ok", "failed", "missing")}
    notes.append(
        f"{len(results)} runs: {counts['ok']} ok, {counts['failed']} failed, {counts['missing']} missing. "
        f"Test-set scores, mean ± sample std over seeds (number of successful runs in brackets); best in bold."
    )
    text = summary_markdown(summary, grid_keys, shown, compare=compare, title="Ablation summary", notes=notes)
    effects = paired_effects(results, grid_keys, metric, compare=compare)
    if effects:
        text += (
            f"\n## Effect of each setting on {METRIC_LABELS.get(metric, metric)}\n\n"
            "Paired differences: runs that differ only in this setting (same other settings and seed).\n\n"
            + effects_markdown(effects, metric, compare=compare)
        )
    write_text_atomic(os.path.join(output_dir, OUTPUT_FILES["summary_md"]), text)
    chart = None
    if any(not math.isnan(e[f"{metric}_mean"]) for e in summary):
        chart = plot_summary(os.path.join(output_dir, OUTPUT_FILES["chart"]), summary, grid_keys, metric, compare=compare)
    return {"results": results, "summary": summary, "metric": metric, "chart": chart, "counts": counts}


_NOISE = {"runtime", "samples_per_second", "steps_per_second", "epoch"}


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


if __name__ == "__main__":  # a run in a fresh interpreter (GPU launcher): python -m ser_hf.ablation RUN_DIR
    sys.exit(execute_run(sys.argv[1]))
