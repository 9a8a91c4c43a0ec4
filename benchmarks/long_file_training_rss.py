"""Peak memory of a tiny `ser-hf train` run with one 10-minute file in the manifest vs without it.

Training crops are read by seeking in the file (`load_audio_crop`), so a long recording should
cost what its crop costs. Three runs of the same tiny training (WavLM-class tiny encoder, 12 clips
of 2-5 s, 2 s crops, 4 steps of 4, every row drawn once). The crop is short on purpose: with 12 s
crops the tiny model's activations set the peak and hide a whole-file decode (measured: 899.8 /
903.1 / 889.5 MiB without / with / decode-then-slice), so they could not show the difference.

* ``without``: the 12 clips (each at least a crop long, so every batch has the same shape in all runs);
* ``with``: the same plus one 10-minute 48 kHz stereo 16-bit WAV (the long file is drawn in training);
* ``with_decode_then_slice`` (baseline, in the same run): as ``with``, but the collator decodes the
  whole file and then slices the crop, as ser-hf did before.

Each run is a fresh subprocess measured alone (``ru_maxrss`` from ``os.wait4``; see
benchmarks/predict_memory.py for why this process never imports torch). Both glibc malloc settings
of predict_memory.py are measured.

    python benchmarks/long_file_training_rss.py [--minutes 10] [--output benchmarks/results/long_file_training_rss.json]
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import sys
import tempfile

import numpy as np
import soundfile as sf

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from predict_memory import ALLOCATORS, run_measured, write_long_wav  # noqa: E402

# Child for the baseline: the collator's seek-based crop replaced by what ser-hf did before
# (decode the whole file as float32 with all its channels, mix down, resample, then slice the crop).
DECODE_THEN_SLICE = """
import sys
import soundfile as sf
import soxr
import ser_hf.data.collators as collators
from ser_hf.data.audio import crop

def decode_then_slice(path, rate, n, rng=None):
    data, source_rate = sf.read(path, dtype="float32", always_2d=True)
    wave = data.mean(axis=1)
    if source_rate != rate:
        wave = soxr.resample(wave, source_rate, rate)
    return crop(wave, n, random=rng is not None, rng=rng)

collators.load_audio_crop = decode_then_slice
from ser_hf.cli import main
sys.exit(main(sys.argv[1:]))
"""


def write_manifest(folder: str, long_wav: str | None, crop_seconds: float) -> str:
    """12 clips at least one crop long (so every batch is crop-sized with or without the long file,
    and the runs differ only in the long file's length), plus the long file if given."""
    rng = np.random.default_rng(0)
    rows = []
    for k in range(12):
        label = "abc"[k % 3]
        path = os.path.join(folder, f"clip{k}.wav")
        if not os.path.exists(path):
            t = np.arange(int(rng.uniform(crop_seconds, crop_seconds + 3.0) * 16000)) / 16000
            sf.write(path, (0.3 * np.sin(2 * np.pi * (150 + 100 * (k % 3)) * t)).astype(np.float32), 16000)
        rows.append({"id": f"clip{k}", "audio": path, "label": label, "split": "train"})
    if long_wav:
        rows.append({"id": "long", "audio": long_wav, "label": "a", "split": "train"})
    manifest = os.path.join(folder, "with.csv" if long_wav else "without.csv")
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def write_config(folder: str, manifest: str, name: str, crop_seconds: float) -> str:
    import json

    tiny = {  # ser_hf.tiny.tiny_speech_backbone("wavlm"), spelled out so this process stays small
        "model_type": "wavlm", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 1,
        "intermediate_size": 64, "conv_dim": [32] * 7, "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 1, "feat_extract_norm": "layer", "do_stable_layer_norm": True,
        "vocab_size": 32, "num_buckets": 32, "max_bucket_distance": 200,
    }
    config = {
        "corpus": "manifest", "data_path": manifest, "labels": ["a", "b", "c"], "task": "categorical",
        "modality": "speech", "backbone_config": tiny, "head_hidden_size": 16, "max_audio_seconds": crop_seconds,
        "per_device_train_batch_size": 4, "max_steps": 4, "sampler": "none", "eval_strategy": "no",
        "save_strategy": "no", "test_split": "none", "eval_split": "none", "report_to": "none", "disable_tqdm": True,
        "use_cpu": True, "dataloader_num_workers": 0, "output_dir": os.path.join(folder, f"run-{name}"),
    }
    path = os.path.join(folder, f"{name}.json")
    with open(path, "w") as handle:
        json.dump(config, handle)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sampling_rate", type=int, default=48000)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--crop_seconds", type=float, default=2.0,
                        help="Training crop; short, so the training step does not hide what decoding costs.")
    parser.add_argument("--allocators", nargs="+", choices=sorted(ALLOCATORS), default=list(ALLOCATORS))
    parser.add_argument("--output", default=os.path.join(HERE, "results", "long_file_training_rss.json"))
    args = parser.parse_args(argv)

    runs = []
    with tempfile.TemporaryDirectory(prefix="ser-hf-train-rss-") as tmp:
        long_wav = os.path.join(tmp, "long.wav")
        write_long_wav(long_wav, args.minutes, args.sampling_rate, args.channels)
        without = write_manifest(tmp, None, args.crop_seconds)
        with_long = write_manifest(tmp, long_wav, args.crop_seconds)
        cli = [sys.executable, "-m", "ser_hf.cli", "train", "--config"]
        variants = {
            "without": cli + [write_config(tmp, without, "without", args.crop_seconds)],
            "with": cli + [write_config(tmp, with_long, "with", args.crop_seconds)],
            "with_decode_then_slice": [sys.executable, "-c", DECODE_THEN_SLICE, "train", "--config",
                                       write_config(tmp, with_long, "baseline", args.crop_seconds)],
        }
        for allocator in args.allocators:
            for name, command in variants.items():
                measured = run_measured(command, os.path.join(tmp, f"{name}.log"), ALLOCATORS[allocator])
                runs.append({"variant": name, "allocator": allocator, **measured})
                print(f"{allocator:>21} {name:>24}: peak RSS {measured['peak_rss_mib']:7.1f} MiB "
                      f"({measured['seconds']:.1f} s)", flush=True)
        file_mib = round(os.path.getsize(long_wav) / 2**20, 1)

    ratios = {}
    for allocator in args.allocators:
        peak = {r["variant"]: r["peak_rss_mib"] for r in runs if r["allocator"] == allocator}
        ratios[allocator] = {
            "with_over_without": round(peak["with"] / peak["without"], 3),
            "decode_then_slice_over_without": round(peak["with_decode_then_slice"] / peak["without"], 3),
            "extra_mib_with": round(peak["with"] - peak["without"], 1),
            "extra_mib_decode_then_slice": round(peak["with_decode_then_slice"] - peak["without"], 1),
        }
        print(f"{allocator}: {ratios[allocator]}")
    from importlib.metadata import version

    result = {
        "what": f"peak RSS of a tiny `ser-hf train` (4 steps of 4, {args.crop_seconds:g} s crops) with one long file in the manifest vs without",
        "settings": {"minutes": args.minutes, "sampling_rate": args.sampling_rate, "channels": args.channels,
                     "long_file_mib": file_mib, "crop_seconds": args.crop_seconds,
                     "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "1")},
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": version("torch"),
                    "cpus": os.cpu_count()},
        "runs": runs,
        "ratios": ratios,
    }
    from ser_hf.io import write_json_atomic

    write_json_atomic(args.output, result)
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
