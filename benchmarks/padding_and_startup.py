"""Padding per recipe and start-up time at corpus scale.

1. **Real-frame fraction** of every speech recipe's training batches on its own corpus layout:
   real audio seconds / padded seconds (longest crop in the batch x batch size) over one epoch of
   the recipe's sampler, batch size and crop, with ``group_by_length`` off (the round-1 default,
   the baseline) and on (the new default), and with a ``max_batch_seconds`` budget. Layouts:
   MSP-Podcast: lognormal durations, median 5 s, clipped to 2.75-11 s, the corpus's class skew;
   EmoDB: the real 535 files' durations and labels (``$SER_HF_EMODB``, default
   /work/shared/data/emodb); demo: the synthetic corpus's own generator settings.
2. **Second start of a 100k-row manifest**: the real `ser-hf train` (CLI, config file, the preflight
   validation pass that opens every audio file, model, `SERTrainer` with the length-grouped
   up-sampler, `Trainer.train` up to its first step) on a fresh 100,000-row manifest, in a fresh
   process each time, timed by phase (wall and CPU) by wrapping the functions the CLI calls. The
   first start parses the manifest and probes every file (filling the parsed-manifest and audio
   header caches); the second starts (``--second-starts``, median reported) only stat the files.
   The files are hard links of a few short WAVs (the cost measured is opening headers, not decoding).

    python benchmarks/padding_and_startup.py [--rows 100000] [--second-starts 3] [--skip-startup] [--skip-padding]

Writes benchmarks/results/padding_and_startup.json atomically.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

MSP_CLASSES = {"N": 0.46, "H": 0.16, "A": 0.08, "S": 0.08, "C": 0.12, "U": 0.05, "D": 0.03, "F": 0.02}


def msp_layout(n: int = 60_000, seed: int = 0):
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(5.0), 0.5, n), 2.75, 11.0)
    labels = rng.choice(len(MSP_CLASSES), size=n, p=list(MSP_CLASSES.values()))
    return lengths, labels


def emodb_layout():
    import soundfile as sf

    root = os.environ.get("SER_HF_EMODB", "/work/shared/data/emodb")
    folder = os.path.join(root, "wav") if os.path.isdir(os.path.join(root, "wav")) else root
    names = sorted(f for f in os.listdir(folder) if f.endswith(".wav"))
    lengths = np.array([sf.info(os.path.join(folder, f)).duration for f in names])
    codes = [f[5] for f in names]  # EmoDB file names: 03a01Fa.wav -> class letter at position 5
    classes = sorted(set(codes))
    return lengths, np.array([classes.index(c) for c in codes])


def demo_layout(n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    from ser_hf.data.corpora.synthetic import DURATION_RANGE_S

    return rng.uniform(*DURATION_RANGE_S, n), rng.choice(4, size=n, p=[0.4, 0.3, 0.2, 0.1])


RECIPES = {
    "msp_podcast/speech_cat": msp_layout,
    "msp_podcast/speech_dim": msp_layout,
    "emodb/config": emodb_layout,
    "emodb/config_wavlm": emodb_layout,
    "demo/speech": demo_layout,
}


def real_frame_fraction(lengths, labels, sampler: str, batch_size: int, crop: float, grouped: bool,
                        max_batch_seconds: float | None = None, epochs: int = 2) -> float:
    from ser_hf.samplers import build_batch_sampler

    cropped = np.minimum(lengths, crop)
    s = build_batch_sampler(sampler, labels.tolist(), batch_size, lengths=cropped.tolist(), group_by_length=grouped,
                            max_batch_seconds=max_batch_seconds, seed=0)
    real = padded = 0.0
    for epoch in range(epochs):
        for batch in s.epoch_batches(epoch):
            real += cropped[batch].sum()
            padded += cropped[batch].max() * len(batch)
    return float(real / padded)


def padding_table() -> list[dict]:
    rows = []
    for recipe, layout in RECIPES.items():
        with open(os.path.join(ROOT, "recipes", recipe + ".yaml"), encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
        lengths, labels = layout()
        sampler = config.get("sampler", "none")
        batch_size = int(config.get("per_device_train_batch_size", 8))
        crop = float(config.get("max_audio_seconds", 12.0))
        budget = batch_size * float(np.median(np.minimum(lengths, crop)))
        row = {
            "recipe": recipe, "sampler": sampler, "batch_size": batch_size, "crop_seconds": crop,
            "group_by_length_in_recipe": bool(config.get("group_by_length", True)), "utterances": len(lengths),
            "median_seconds": float(np.median(lengths)),
            "fraction_ungrouped": real_frame_fraction(lengths, labels, sampler, batch_size, crop, False),
            "fraction_grouped": real_frame_fraction(lengths, labels, sampler, batch_size, crop, True),
            "max_batch_seconds": budget,
            "fraction_seconds_budget": real_frame_fraction(lengths, labels, sampler, batch_size, crop, True, budget),
        }
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ start-up
def write_manifest(folder: str, rows: int) -> str:
    import soundfile as sf

    audio = os.path.join(folder, "wav")
    os.makedirs(audio)
    rng = np.random.default_rng(0)
    labels = rng.choice(list(MSP_CLASSES), size=rows, p=list(MSP_CLASSES.values()))
    path = os.path.join(folder, "manifest.csv")
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "audio", "label", "split"])
        for i in range(rows):
            name = f"u{i:06d}.wav"
            if i % 50_000 == 0:  # a file system allows ~65k links per inode
                source = os.path.join(folder, f"source{i}.wav")
                sf.write(source, np.zeros(1600, dtype=np.float32), 16000)
            os.link(source, os.path.join(audio, name))
            writer.writerow([f"u{i:06d}", f"wav/{name}", labels[i], "train"])
    return path


TRAIN_CONFIG = {
    "corpus": "manifest", "labels": list(MSP_CLASSES), "task": "categorical", "modality": "speech",
    "train_split": "train", "eval_split": "none", "test_split": "none", "eval_strategy": "no", "save_strategy": "no",
    "report_to": "none", "per_device_train_batch_size": 32, "sampler": "up", "group_by_length": True,
    "max_audio_seconds": 12.0, "max_steps": 1, "use_cpu": True, "disable_tqdm": True, "dataloader_num_workers": 0,
}


class _FirstStep(Exception):
    """Raised at the first training step: everything before it is start-up."""


def startup_child(manifest: str) -> dict:
    """Seconds (wall and CPU) from process start to the first training step of the real `ser-hf train`.

    The CLI runs unchanged (argument parsing, the preflight validation pass over every row and audio
    file, model, `SERTrainer`, sampler over cached durations, `Trainer.train` up to its first step);
    the phases are timed by wrapping the functions the CLI calls, and the first `training_step` stops it.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    phases: dict[str, float] = {}
    cpu: dict[str, float] = {}
    import ser_hf.cli
    import ser_hf.commands.train  # noqa: F401  (what `ser-hf train` imports before it reads the config)
    import ser_hf.experiment as experiment
    import ser_hf.preflight as preflight
    from ser_hf.tiny import tiny_speech_backbone
    from ser_hf.trainer import SERTrainer

    phases["imports"], cpu["imports"] = time.perf_counter() - start, time.process_time() - cpu_start

    def timed(owner, name: str, phase: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            t, c = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - t
                cpu[phase] = cpu.get(phase, 0.0) + time.process_time() - c

        setattr(owner, name, wrapper)

    timed(preflight, "load_run_corpus", "manifest")
    timed(preflight, "validate_dataset", "validation")
    timed(experiment, "check_training_data", "preflight_total")
    timed(experiment, "build_model", "model")
    timed(SERTrainer, "__init__", "trainer")
    timed(SERTrainer, "get_train_dataloader", "sampler_with_durations")

    reached: dict[str, float] = {}

    def first_step(self, *args, **kwargs):
        reached["epoch_seconds"] = time.time()
        raise _FirstStep

    SERTrainer.training_step = first_step
    with tempfile.TemporaryDirectory() as out:
        config = dict(TRAIN_CONFIG, data_path=manifest, output_dir=out, backbone_config=tiny_speech_backbone())
        config_path = os.path.join(out, "config.yaml")
        with open(config_path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(config, handle)
        try:
            code = ser_hf.cli.main(["train", "--config", config_path])
            raise SystemExit(f"ser-hf train ended with status {code} before its first step")
        except _FirstStep:
            pass
    total, total_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    for table, whole in ((phases, total), (cpu, total_cpu)):
        table["preflight_rest"] = table.pop("preflight_total") - table["manifest"] - table["validation"]
        table["train_setup_and_first_batch"] = whole - sum(table.values())
    result = {"wall": phases, "cpu": cpu, "total_before_first_step": total, "total_cpu": total_cpu,
              "first_step_at": reached["epoch_seconds"], "durations_cache_load": _durations_load(manifest)}
    return result


def _durations_load(manifest: str) -> dict:
    """Seconds to get every row's duration from the header cache after the run: as the trainer does
    after validation (no stat), and as a launch without validation does (one stat per file)."""
    from ser_hf.data.durations import read_durations

    folder = os.path.dirname(os.path.abspath(manifest))
    with open(manifest, encoding="utf-8") as handle:
        paths = [os.path.join(folder, row["audio"]) for row in csv.DictReader(handle)]
    out = {}
    for name, trust in (("trusted", True), ("with_stat", False)):
        t, c = time.perf_counter(), time.process_time()
        read_durations(paths, progress=False, trust_cache=trust)
        out[name] = {"wall": time.perf_counter() - t, "cpu": time.process_time() - c}
    return out


def startup(rows: int, folder: str | None = None, second_starts: int = 3) -> dict:
    """First and second start of `ser-hf train` on a fresh ``rows``-row manifest, each a fresh process.

    ``folder`` keeps the manifest and its audio links between invocations (caches are removed
    before the first start, so it is a first start all the same)."""
    import shutil

    with tempfile.TemporaryDirectory() as scratch:
        folder = folder or scratch
        manifest = os.path.join(folder, "manifest.csv")
        if not os.path.isfile(manifest):
            os.makedirs(folder, exist_ok=True)
            t = time.perf_counter()
            write_manifest(folder, rows)
            print(f"wrote a {rows}-row manifest in {time.perf_counter() - t:.1f} s", flush=True)
        cache = os.path.join(folder, "ser_hf_cache")
        shutil.rmtree(cache, ignore_errors=True)
        for stale in (os.path.join(folder, "wav", ".ser_hf_durations.parquet"), os.path.join(folder, ".ser_hf_durations.parquet")):
            if os.path.exists(stale):
                os.remove(stale)
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), HF_DATASETS_OFFLINE="1",
                   HF_HUB_OFFLINE="1", SER_HF_CACHE=cache)
        runs = {}
        for name in ["first_start"] + [f"second_start_{k}" for k in range(1, second_starts + 1)]:
            t, spawned = time.perf_counter(), time.time()
            done = subprocess.run([sys.executable, __file__, "--child", manifest], env=env, capture_output=True, text=True)
            elapsed = time.perf_counter() - t
            if done.returncode:
                sys.stderr.write(done.stderr[-4000:])
                raise SystemExit("start-up child failed")
            runs[name] = json.loads(done.stdout.strip().splitlines()[-1])
            runs[name]["process_wall_incl_interpreter_exit"] = elapsed
            runs[name]["spawn_to_first_step"] = runs[name].pop("first_step_at") - spawned
            wall, cpu = runs[name]["wall"], runs[name]["cpu"]
            print(f"{name}: {runs[name]['spawn_to_first_step']:.2f} s wall from spawning the process to the first step "
                  f"({runs[name]['total_before_first_step']:.2f} s after the interpreter started, "
                  f"{runs[name]['total_cpu']:.2f} s CPU)", flush=True)
            for phase in wall:
                print(f"    {phase:38s} {wall[phase]:7.2f} s wall {cpu[phase]:7.2f} s CPU", flush=True)
            load = runs[name]["durations_cache_load"]
            print(f"    (after the run: {rows} durations from the cache in {load['trusted']['wall']:.2f} s as the trainer "
                  f"reads them, {load['with_stat']['wall']:.2f} s with a stat per file)", flush=True)
    seconds = [runs[name] for name in runs if name.startswith("second_start")]
    summary = {key: statistics.median(run[key] for run in seconds)
               for key in ("spawn_to_first_step", "total_before_first_step", "total_cpu")}
    summary["imports_wall"] = statistics.median(run["wall"]["imports"] for run in seconds)
    summary["imports_cpu"] = statistics.median(run["cpu"]["imports"] for run in seconds)
    print(f"second start, median of {len(seconds)}: {summary['spawn_to_first_step']:.2f} s wall from spawn to the first "
          f"step, {summary['total_cpu']:.2f} s CPU (imports {summary['imports_wall']:.2f} s wall, "
          f"{summary['imports_cpu']:.2f} s CPU)", flush=True)
    return {"rows": rows, "load_average_after": os.getloadavg(), "second_start_median": summary, **runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--skip-padding", action="store_true")
    parser.add_argument("--second-starts", type=int, default=3, help="second starts to time (median reported)")
    parser.add_argument("--startup-folder", help="keep the start-up manifest and its audio links here (reused)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--output", default=os.path.join(HERE, "results", "padding_and_startup.json"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(startup_child(args.child)))
        return
    if args.skip_padding:  # keep the table a previous full run saved
        previous = json.load(open(args.output)) if os.path.isfile(args.output) else {}
        rows = previous.get("real_frame_fraction", [])
    else:
        rows = padding_table()
    print(f"{'recipe':24} {'sampler':7} {'batch':>5} {'crop s':>6} {'ungrouped':>9} {'grouped':>8} "
          f"{'budget s':>8} {'budget':>7}")
    for r in rows:
        print(f"{r['recipe']:24} {r['sampler']:7} {r['batch_size']:5d} {r['crop_seconds']:6.1f} "
              f"{r['fraction_ungrouped']:9.3f} {r['fraction_grouped']:8.3f} {r['max_batch_seconds']:8.1f} "
              f"{r['fraction_seconds_budget']:7.3f}")
    result = {"benchmark": "padding_and_startup", "real_frame_fraction": rows,
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
              "command": "python benchmarks/padding_and_startup.py " + " ".join(sys.argv[1:])}
    if not args.skip_startup:
        result["startup"] = startup(args.rows, args.startup_folder, args.second_starts)
    from ser_hf.io import write_json_atomic

    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    write_json_atomic(args.output, result)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
