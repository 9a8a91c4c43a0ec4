"""The run engine shared by every sweep: each run is ``ser_hf.experiment.train`` in its own process,
recorded atomically in its own folder, skipped once finished.

Why it looks the way it does:

* Each run is in its **own process**, so a crash or an out-of-memory kill ends one run, not the
  sweep; the failure is recorded (error summary + log path) in the table. On a CPU-only machine the
  processes are forked from a server that has already imported torch and transformers
  (``multiprocessing`` "forkserver"), which saves the ~10 CPU-seconds of imports per run; with GPUs
  every run is a fresh interpreter with ``CUDA_VISIBLE_DEVICES`` set to its device.
* Every run has its own folder holding ``config.yaml`` (a complete config: ``ser-hf train --config
  <run>/config.yaml`` repeats the run), ``train.log`` and, once finished, ``result.json`` (written
  atomically, last). A run with a successful ``result.json`` (or its finished outputs) is skipped,
  so a killed sweep resumes where it stopped; failed runs are retried unless asked not to.
* A run may ask for its test predictions too (``Run.save_predictions``; `ser-hf cv` pools them
  over folds): the child then writes ``test_predictions.csv`` after training, and the run only
  counts as finished once that file exists.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import yaml

from ser_hf.io import write_json_atomic, write_text_atomic

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"
CONFIG_FILE = "config.yaml"
LOG_FILE = "train.log"
ERROR_FILE = "error.json"
METRICS_FILE = "test_metrics.json"  # written by ser_hf.experiment.train
PREDICTIONS_FILE = "test_predictions.csv"  # written after training when the run asks for it
TRANSFER_FILE = "transfer_metrics.json"  # metrics on other corpora, when the run asks for them
SWEEP_FILE = "sweep_run.json"  # what the engine asks of the child beyond training
_PRELOAD = ["ser_hf.sweeps.predictions", "ser_hf.experiment", "ser_hf.trainer", "ser_hf.modeling", "ser_hf.data.corpora", "ser_hf.data.subsample"]


# ------------------------------------------------------------------------------------------ the plan
@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of a sweep: a grid cell (ordered ``(key, value)`` pairs), a seed and, for
    cross-validation, a fold. ``save_predictions`` asks the child for ``test_predictions.csv``;
    ``evaluate_on`` (data-argument mappings with a ``split``) for ``transfer_metrics.json``: the
    trained model's metrics on other corpora (cross-corpus evaluation)."""

    cell: tuple[tuple[str, Any], ...]
    seed: int
    run_dir: str
    config: dict
    fold: int | None = None
    save_predictions: bool = False
    evaluate_on: tuple = ()

    @property
    def outputs(self) -> list[str]:
        """Files the child writes; the run is finished once all exist."""
        return [METRICS_FILE] + ([PREDICTIONS_FILE] if self.save_predictions else []) + (
            [TRANSFER_FILE] if self.evaluate_on else []
        )

    @property
    def cell_label(self) -> str:
        return " ".join(f"{k}={show_value(v)}" for k, v in self.cell)

    @property
    def run_id(self) -> str:
        if self.fold is not None:
            cell_dir = os.path.basename(os.path.dirname(os.path.dirname(self.run_dir)))
            return f"{cell_dir}/seed{self.seed}/fold{self.fold}"
        return f"{os.path.basename(os.path.dirname(self.run_dir))}/seed{self.seed}"


def show_value(value: Any) -> str:
    """A grid value as text (lists space-joined, None as ``none``)."""
    if isinstance(value, list):
        return " ".join(map(str, value))
    return "none" if value is None else str(value)


# ------------------------------------------------------------------------------------------ run state
def read_json(path: str) -> Any:
    """The JSON in ``path``, or None when it is absent or unreadable (a run still in progress)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _comparable(config: Mapping[str, Any]) -> dict:
    return {k: v for k, v in config.items() if k != "output_dir"}


def load_result(run: Run) -> dict | None:
    """The run's recorded result, or None if it has not finished.

    A ``test_metrics.json`` without ``result.json`` (killed just after training) counts as finished
    (with ``test_predictions.csv`` too when the run asks for predictions); the result is recorded from it.
    """
    result = read_json(os.path.join(run.run_dir, RESULT_FILE))
    if result is not None:
        return result
    metrics = read_json(os.path.join(run.run_dir, METRICS_FILE))
    finished = os.path.isfile(os.path.join(run.run_dir, CONFIG_FILE)) and all(
        os.path.isfile(os.path.join(run.run_dir, name)) for name in run.outputs
    )
    if metrics is not None and finished:
        result = _result_record(run, "ok", metrics=metrics, seconds=None)
        write_json_atomic(os.path.join(run.run_dir, RESULT_FILE), result)
        return result
    return None


def _result_record(run: Run, status: str, *, metrics=None, seconds=None, error=None) -> dict:
    return {
        "status": status,
        "cell": {k: v for k, v in run.cell},
        "seed": run.seed,
        "fold": run.fold,
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
        saved = read_json(os.path.join(run.run_dir, RESULT_FILE))
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
        from ser_hf.sweeps.grid import argument_dataclasses

        args = parse_config(argument_dataclasses(), ["--config", os.path.join(run_dir, CONFIG_FILE)])
        train(*args)
        asked = read_json(os.path.join(run_dir, SWEEP_FILE)) or {}
        if asked.get("save_predictions"):
            from ser_hf.sweeps.predictions import write_test_predictions

            write_test_predictions(os.path.join(run_dir, PREDICTIONS_FILE), *args)
        if asked.get("evaluate_on"):
            from ser_hf.sweeps.predictions import write_transfer_metrics

            write_transfer_metrics(os.path.join(run_dir, TRANSFER_FILE), asked["evaluate_on"], *args)
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
            with self._lock:  # started under the lock: kill_all only ever sees started children
                if self.stopping:
                    return None, "interrupted"
                child.start()
                self._children.add(child)
            try:
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
            with self._lock:
                if self.stopping:
                    return None, "interrupted"
                child = subprocess.Popen(
                    [sys.executable, "-m", "ser_hf.sweeps.runner", run.run_dir], stdout=log, stderr=subprocess.STDOUT, env=env
                )
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
            try:
                child.kill()
            except (OSError, ValueError):  # exited meanwhile
                pass


def _failure_reason(run: Run, code: int | None, reason: str | None) -> str:
    error = read_json(os.path.join(run.run_dir, ERROR_FILE))
    if error and error.get("error"):
        return error["error"]
    if reason:
        return reason
    if code is not None and code < 0:
        return f"killed by signal {-code}" + (" (out of memory?)" if -code == 9 else "")
    if code == 0:
        missing = next(name for name in run.outputs if not os.path.isfile(os.path.join(run.run_dir, name)))
        return f"finished without {missing}"
    return f"exit code {code}"


def _do_run(run: Run, launcher: _Launcher, device: str | None, tag: str = "ablate") -> dict | None:
    """Prepare the run folder, run it in a child process and record its result atomically.

    A run killed because the sweep was interrupted gets no result: it is simply unfinished."""
    os.makedirs(run.run_dir, exist_ok=True)
    for name in (RESULT_FILE, ERROR_FILE, METRICS_FILE, PREDICTIONS_FILE, TRANSFER_FILE):
        if os.path.exists(os.path.join(run.run_dir, name)):
            os.remove(os.path.join(run.run_dir, name))
    write_text_atomic(os.path.join(run.run_dir, CONFIG_FILE), yaml.safe_dump(run.config, sort_keys=False))
    write_json_atomic(os.path.join(run.run_dir, SWEEP_FILE), {"save_predictions": run.save_predictions, "evaluate_on": list(run.evaluate_on)})
    with open(os.path.join(run.run_dir, LOG_FILE), "a", encoding="utf-8") as log:
        log.write(f"\n===== ser-hf {tag}: {run.cell_label} seed={run.seed}{'' if run.fold is None else f' fold={run.fold}'} device={device or 'cpu'} {time.ctime()}\n")
    start = time.time()
    code, reason = launcher.run(run, device)
    seconds = round(time.time() - start, 1)
    if launcher.stopping:
        return None
    metrics = read_json(os.path.join(run.run_dir, METRICS_FILE))
    outputs_ok = all(os.path.isfile(os.path.join(run.run_dir, name)) for name in run.outputs)
    if code == 0 and metrics is not None and outputs_ok:
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


@dataclasses.dataclass(frozen=True)
class SweepEngine:
    """How a sweep places and starts its runs. One value shared by ``ablate``, ``cv`` and ``crosscorpus``
    (and their command-line flags, ``ser_hf.commands.sweep_options``), so the three cannot drift apart."""

    devices: str | Sequence[str] | None = "auto"
    jobs: int | None = None
    launcher: str = "auto"
    max_runs: int | None = None  # run at most this many unfinished runs, then stop
    run_timeout: float | None = None  # seconds after which a run is killed and marked failed
    retry_failed: bool = True
    progress: Callable[[str], None] = print

    def run(self, runs: Sequence[Run], *, tag: str) -> SweepCounts:
        return run_sweep(runs, self, tag=tag)


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """What every sweep checks before it runs anything: the base config, the fixed values, seeds, folder."""

    base: dict
    fixed: dict
    seeds: list[int]
    output_dir: str


def plan_sweep(
    config: str | Mapping[str, Any],
    fixed: Mapping[str, Sequence[str]] | None,
    seeds: Sequence[int] | None,
    output_dir: str | None,
    *,
    default_root: str,
) -> SweepPlan:
    """Load the base config (unknown keys are an error), type the ``--set`` values, default the seeds to the
    config's seed and the folder to ``<default_root>/<config name>``."""
    from ser_hf.config_parser import load_yaml
    from ser_hf.sweeps.grid import argument_fields, typed_values

    base = load_yaml(config) if isinstance(config, (str, os.PathLike)) else dict(config)
    unknown = sorted(set(base) - set(argument_fields()))
    if unknown:
        raise ValueError(f"{config}: unknown config keys {unknown}")
    typed_fixed = {k: v[0] for k, v in typed_values(fixed or {}, what="--set").items()}
    seeds = list(seeds) if seeds else [int(base.get("seed", 42))]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat: {seeds}")
    if output_dir is None:
        stem = os.path.splitext(os.path.basename(config))[0] if isinstance(config, (str, os.PathLike)) else "config"
        output_dir = os.path.join(default_root, stem)
    return SweepPlan(base, typed_fixed, seeds, os.path.abspath(output_dir))


def refuse_stale(runs: Sequence[Run], output_dir: str) -> None:
    stale = stale_runs(runs)
    if stale:
        raise ValueError(
            f"{len(stale)} finished runs in {output_dir} were made with a different config (e.g. {stale[0]}); "
            "use another --output_dir or delete them"
        )


def run_sweep(runs: Sequence[Run], engine: SweepEngine | None = None, *, tag: str = "ablate") -> SweepCounts:
    """Run every unfinished run; returns what happened. Finished runs are not touched."""
    engine = engine or SweepEngine()
    devices = resolve_devices(engine.devices)
    jobs, launcher, max_runs, progress = engine.jobs, engine.launcher, engine.max_runs, engine.progress
    counts = SweepCounts(planned=len(runs))
    todo = []
    for run in runs:
        result = load_result(run)
        if result is not None and (result["status"] == "ok" or not engine.retry_failed):
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
        f"[{tag}] {counts.planned} runs planned: {counts.skipped} already finished, {len(todo)} to run now"
        + (f", {counts.not_run} left for later (max_runs={max_runs})" if counts.not_run else "")
        + f"; {jobs} at a time on {','.join(devices)}"
    )
    if not todo:
        return counts
    runner = _Launcher(launcher, engine.run_timeout)
    free = list(devices) * max(1, -(-jobs // len(devices)))
    lock = threading.Lock()
    started = time.time()

    def work(run: Run) -> None:
        with lock:
            device = free.pop(0)
        try:
            result = _do_run(run, runner, None if device == "cpu" and launcher == "fork" else device, tag)
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
                f"[{tag}] {done}/{len(todo)} {run.cell_label} seed={run.seed}{'' if run.fold is None else f' fold={run.fold}'}: {status} "
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
        progress(f"[{tag}] interrupted: {counts.ran} runs done, {len(todo) - counts.ran} left; rerun the same command to resume")
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
    from ser_hf.sweeps.statistics import SCORE_METRICS

    for name in SCORE_METRICS:
        if isinstance(metrics.get(name), (int, float)):
            return name, float(metrics[name])
    return None



def collect_results(runs: Sequence[Run]) -> list[dict]:
    """One row per planned run: status ok / failed / missing, its metrics, time, error and log."""
    rows = []
    for run in runs:
        result = read_json(os.path.join(run.run_dir, RESULT_FILE))
        row = {"run": run.run_id, **{k: show_value(v) for k, v in run.cell}, "seed": run.seed, "fold": run.fold}
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


if __name__ == "__main__":  # a run in a fresh interpreter (GPU launcher): python -m ser_hf.sweeps.runner RUN_DIR
    sys.exit(execute_run(sys.argv[1]))
