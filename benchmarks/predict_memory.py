"""Peak memory of `ser-hf predict` against recording length: it must stay flat.

`ser_hf.inference` streams files block by block instead of decoding them whole. This script checks
that claim: it writes 16-bit 44.1 kHz stereo WAVs of 1, 5 and 10 minutes, runs `ser-hf predict`
with a tiny saved model on each in a fresh subprocess, and reads that subprocess's peak resident
memory (``ru_maxrss`` from ``os.wait4``, so each run is measured alone). As a control, showing
that the measurement would notice growth, it also measures a subprocess that decodes each file
whole with `load_audio`.

Linux carries a process's peak RSS across fork and exec, so a child's ``ru_maxrss`` is at least
the parent's size when it was forked. This script therefore never imports torch or transformers
itself (the tiny model is saved by a subprocess too) and stays a few tens of MiB.

    python benchmarks/predict_memory.py [--minutes 1 5 10] [--output benchmarks/results/predict_memory.json]

Prints a table and writes the JSON atomically.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

HERE = os.path.dirname(os.path.abspath(__file__))


def write_long_wav(path: str, minutes: float, rate: int, channels: int, seed: int = 0) -> None:
    """Noise with a slow loudness envelope, written 10 s at a time (this process stays small too)."""
    rng = np.random.default_rng(seed)
    block = 10 * rate
    total = int(minutes * 60 * rate)
    with sf.SoundFile(path, "w", samplerate=rate, channels=channels, subtype="PCM_16") as handle:
        for start in range(0, total, block):
            n = min(block, total - start)
            t = (start + np.arange(n)) / rate
            envelope = 0.05 + 0.25 * (1 + np.sin(2 * np.pi * t / 37.0)) / 2
            handle.write((rng.standard_normal((n, channels)) * envelope[:, None]).astype(np.float32))


def save_tiny_model(folder: str, max_audio_seconds: float) -> None:
    from ser_hf.configuration import SERSpeechConfig
    from ser_hf.data.corpora import get_corpus_spec
    from ser_hf.modeling import SERModelForSpeech, build_feature_extractor
    from ser_hf.tiny import tiny_speech_backbone

    spec = get_corpus_spec("msp_podcast")
    config = SERSpeechConfig(
        backbone_config=tiny_speech_backbone(), task="multitask", labels=list(spec.labels),
        label_names=spec.label_names, max_audio_seconds=max_audio_seconds,
    )
    model = SERModelForSpeech(config)
    model.save_pretrained(folder)
    build_feature_extractor(config).save_pretrained(folder)


# glibc raises its mmap threshold each time a large mmapped block is freed, so which of the first
# few batches' temporaries end up on the heap (and stay in RSS) varies from run to run: the peak
# settles after about three batches at a level that wanders by tens of MiB between identical runs.
# A fixed threshold removes that adaptive behaviour; both settings are measured.
ALLOCATORS = {"glibc_default": {}, "fixed_mmap_threshold": {"MALLOC_MMAP_THRESHOLD_": "131072"}}


def run_measured(command: list[str], log_path: str, extra_env: dict | None = None) -> dict:
    """Run ``command``; its wall time and peak RSS (MiB) measured for that process alone."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), HF_HUB_OFFLINE="1", **(extra_env or {}))
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            tail = handle.read()[-3000:]
        raise RuntimeError(f"{' '.join(command)} failed with exit code {process.returncode}:\n{tail}")
    return {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "seconds": round(seconds, 2)}


def _own_peak_rss_mib() -> float:
    """This process's peak RSS: a floor under every child's measurement (see the module docstring)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 5, 10])
    parser.add_argument("--sampling_rate", type=int, default=44100)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--window_seconds", type=float, default=12.0, help="The model's window (IS2025 crop).")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--allocators", nargs="+", choices=sorted(ALLOCATORS), default=list(ALLOCATORS))
    parser.add_argument("--no_control", action="store_true", help="Skip the whole-file decoding control.")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "predict_memory.json"))
    parser.add_argument("--save_model", default=None, help=argparse.SUPPRESS)  # internal: child that saves the model
    args = parser.parse_args(argv)
    if args.save_model:
        save_tiny_model(args.save_model, args.window_seconds)
        return 0

    rows, control = [], []
    with tempfile.TemporaryDirectory(prefix="ser-hf-predict-memory-") as tmp:
        model_dir = os.path.join(tmp, "model")
        run_measured([sys.executable, os.path.abspath(__file__), "--save_model", model_dir,
                      "--window_seconds", str(args.window_seconds)], os.path.join(tmp, "save.log"))
        parent = _own_peak_rss_mib()
        for minutes in args.minutes:
            wav = os.path.join(tmp, f"{minutes:g}min.wav")
            write_long_wav(wav, minutes, args.sampling_rate, args.channels)
            for allocator in args.allocators:
                out = os.path.join(tmp, f"out-{minutes:g}-{allocator}")
                command = [sys.executable, "-m", "ser_hf.cli", "predict", model_dir, wav, "--output_dir", out,
                           "--batch_size", str(args.batch_size), "--device", "cpu"]
                measured = run_measured(command, os.path.join(tmp, "predict.log"), ALLOCATORS[allocator])
                with open(os.path.join(out, "predictions.json"), encoding="utf-8") as handle:
                    (file_row,) = json.load(handle)["files"]
                rows.append({
                    "minutes": minutes,
                    "allocator": allocator,
                    "file_mib": round(os.path.getsize(wav) / 2**20, 1),
                    "duration_s": file_row["duration"],
                    "windows": file_row["num_windows"],
                    **measured,
                })
                print(f"predict {minutes:>4g} min ({allocator}): peak RSS {measured['peak_rss_mib']:7.1f} MiB, "
                      f"{file_row['num_windows']} windows, {measured['seconds']:.1f} s", flush=True)
            if not args.no_control:
                decode = [sys.executable, "-c",
                          "import sys; from ser_hf.data.audio import load_audio; load_audio(sys.argv[1], 16000)", wav]
                measured = run_measured(decode, os.path.join(tmp, "decode.log"))
                control.append({"minutes": minutes, **measured})
                print(f"control {minutes:>4g} min: load_audio of the whole file: peak RSS "
                      f"{measured['peak_rss_mib']:7.1f} MiB", flush=True)
            os.remove(wav)

    from importlib.metadata import version

    spread = {}
    for allocator in args.allocators:
        peaks = [row["peak_rss_mib"] for row in rows if row["allocator"] == allocator]
        spread[allocator] = round(max(peaks) - min(peaks), 1)
    result = {
        "what": "peak RSS of `ser-hf predict` (tiny WavLM, 12 s windows, 6 s hop) on 16-bit WAVs of growing length",
        "settings": {
            "sampling_rate": args.sampling_rate, "channels": args.channels, "window_seconds": args.window_seconds,
            "hop_seconds": args.window_seconds / 2, "batch_size": args.batch_size, "device": "cpu",
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "1"),
        },
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": version("torch"),
                    "cpus": os.cpu_count(), "benchmark_process_peak_rss_mib": parent},
        "predict": rows,
        "control_whole_file_decode": control,
        "predict_peak_spread_mib": spread,
    }
    from ser_hf.io import write_json_atomic  # only now: importing ser_hf may pull in torch (see docstring)

    write_json_atomic(args.output, result)
    print(f"spread of predict peaks across lengths (MiB): {spread}; written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
