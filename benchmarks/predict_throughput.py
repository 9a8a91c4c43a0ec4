"""Throughput of `predict` over a folder of many short files: before and after batching across files.

Compares, on the same N generated clips (1-4 s, 16/22.05/44.1 kHz, mono and stereo WAVs) and the same
saved model, in one run:

- **baseline**: `predict` as it was before batching (``ser_hf/inference.py`` at commit
  ``BASELINE_COMMIT``, loaded from git): files one after another, windows batched in file order,
  decoding in the forward pass's process;
- **batched**: today's `predict` (length-sorted batches across files, a DataLoader worker decoding
  and feature-extracting the next batches while the model runs), torch and onnxruntime backends;
- **bare forward**: only the model's forward pass on the same clips, already decoded and
  feature-extracted, in the same length-sorted batches: the floor that decoding overheads sit on
  (with torch's default thread count, and with one thread as batched predict uses beside its worker).

Reports clips/s and the real-time factor (processing seconds per second of audio; lower is faster)
and the ratios to the baseline. Each configuration runs ``--repeats`` times, interleaved; the best
time counts (the machine is shared, and the best run is the one least disturbed by others).

    python benchmarks/predict_throughput.py [--num_files 500] [--batch_size 8] [--repeats 2]

Writes ``benchmarks/results/predict_throughput.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BASELINE_COMMIT = "359fd86"  # main before batched predict


def write_clips(folder: str, count: int, seed: int = 0) -> float:
    """``count`` short clips of speech-like noise; returns their total duration in seconds."""
    rng = np.random.default_rng(seed)
    total = 0.0
    for k in range(count):
        rate = (16000, 22050, 44100)[k % 3]
        channels = 1 + (k % 4 == 0)
        seconds = rng.uniform(1.0, 4.0)
        n = int(seconds * rate)
        envelope = 0.05 + 0.3 * np.abs(np.sin(np.linspace(0, rng.uniform(2, 9), n)))
        wave = rng.standard_normal((n, channels)) * envelope[:, None]
        sf.write(os.path.join(folder, f"clip{k:04d}.wav"), wave.astype(np.float32), rate, subtype="PCM_16")
        total += n / rate
    return total


def save_model(folder: str, hidden_size: int, layers: int) -> None:
    """A small WavLM-style model (2 layers, width 64 by default), 12 s window."""
    from ser_hf.configuration import SERSpeechConfig
    from ser_hf.data.corpora import get_corpus_spec
    from ser_hf.modeling import SERModelForSpeech, build_feature_extractor
    from ser_hf.tiny import tiny_speech_backbone

    spec = get_corpus_spec("emodb")
    torch.manual_seed(0)
    config = SERSpeechConfig(
        backbone_config=tiny_speech_backbone("wavlm", hidden_size=hidden_size, num_layers=layers),
        task="categorical", labels=list(spec.labels), label_names=spec.label_names, max_audio_seconds=12.0,
    )
    model = SERModelForSpeech(config)
    model.save_pretrained(folder)
    build_feature_extractor(config).save_pretrained(folder)


def baseline_module():
    """`ser_hf.inference` as of BASELINE_COMMIT, imported under another name."""
    source = subprocess.run(
        ["git", "-C", ROOT, "show", f"{BASELINE_COMMIT}:ser_hf/inference.py"], check=True, capture_output=True, text=True
    ).stdout
    path = os.path.join(tempfile.mkdtemp(prefix="ser_hf_baseline_"), "baseline_inference.py")
    with open(path, "w") as handle:
        handle.write(source)
    spec = importlib.util.spec_from_file_location("baseline_inference", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_inference"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def bare_forward(model_dir: str, files: list[str], batch_size: int, backend: str, threads: int | None = None) -> tuple[float, list[str]]:
    """Seconds for the forward passes alone (decoding and feature extraction done beforehand)."""
    from ser_hf.data.audio import load_audio
    from ser_hf.inference import load_model

    model, extractor = load_model(model_dir, device="cpu", backend=backend)
    waves = [load_audio(f, 16000) for f in files]
    order = sorted(range(len(waves)), key=lambda i: -len(waves[i]))
    batches = []
    for k in range(0, len(order), batch_size):
        chosen = order[k : k + batch_size]
        batches.append((chosen, extractor([waves[i] for i in chosen], sampling_rate=16000, padding=True,
                                          return_attention_mask=True, return_tensors="pt")))
    labels = [""] * len(files)
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads)
    start = time.perf_counter()
    with torch.inference_mode():
        for chosen, inputs in batches:
            logits = model(**inputs).logits
            for i, best in zip(chosen, logits.argmax(-1).tolist()):
                labels[i] = model.config.id2label[best]
    seconds = time.perf_counter() - start
    torch.set_num_threads(default_threads)
    return seconds, labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_files", type=int, default=500)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", default=os.path.join(HERE, "results", "predict_throughput.json"))
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    from ser_hf.export import export_onnx
    from ser_hf.inference import find_audio_files
    from ser_hf.io import write_json_atomic, write_text_atomic

    work = tempfile.mkdtemp(prefix="ser_hf_throughput_")
    clips = os.path.join(work, "clips")
    os.makedirs(clips)
    audio_seconds = write_clips(clips, args.num_files)
    model_dir, onnx_dir = os.path.join(work, "model"), os.path.join(work, "onnx")
    save_model(model_dir, args.hidden_size, args.layers)
    export_onnx(model_dir, onnx_dir)
    files = find_audio_files(clips)
    baseline = baseline_module()

    def run_predict(module, **kwargs):
        start = time.perf_counter()
        results = module.predict(model_dir if kwargs.pop("backend", "torch") == "torch" else onnx_dir, clips,
                                 batch_size=args.batch_size, device="cpu", **kwargs)
        return time.perf_counter() - start, [row["label"] for row in results.files]

    import ser_hf.inference as current

    configs = {
        "baseline predict (torch)": lambda: run_predict(baseline),
        "batched predict, torch, 1 worker": lambda: run_predict(current, num_workers=1, progress=False),
        "bare forward, torch": lambda: bare_forward(model_dir, files, args.batch_size, "torch"),
        "bare forward, torch, 1 thread": lambda: bare_forward(model_dir, files, args.batch_size, "torch", threads=1),
        "batched predict, onnxruntime, 1 worker": lambda: run_predict(current, num_workers=1, progress=False, backend="onnx"),
        "bare forward, onnxruntime": lambda: bare_forward(onnx_dir, files, args.batch_size, "onnx"),
        "batched predict, torch, 0 workers": lambda: run_predict(current, num_workers=0, progress=False),
    }
    best: dict[str, float] = {}
    labels: dict[str, list[str]] = {}
    for repeat in range(args.repeats):
        for name, run in configs.items():
            seconds, predicted = run()
            best[name] = min(best.get(name, float("inf")), seconds)
            labels[name] = predicted
            print(f"[{repeat + 1}/{args.repeats}] {name}: {seconds:.2f} s", flush=True)
    reference = labels["baseline predict (torch)"]
    base = best["baseline predict (torch)"]
    rows = []
    for name, seconds in best.items():
        rows.append({
            "configuration": name, "seconds": round(seconds, 3), "clips_per_second": round(args.num_files / seconds, 2),
            "real_time_factor": round(seconds / audio_seconds, 5), "speedup_vs_baseline": round(base / seconds, 2),
            "labels_equal_baseline": labels[name] == reference,
        })
    record = {
        "benchmark": "predict_throughput", "num_files": args.num_files, "audio_seconds": round(audio_seconds, 1),
        "batch_size": args.batch_size, "model": f"WavLM-style, {args.layers} layers, width {args.hidden_size}, 12 s window",
        "baseline_commit": BASELINE_COMMIT, "repeats": args.repeats, "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
        "load_average_at_end": os.getloadavg(), "rows": rows,
    }
    write_json_atomic(args.output, record)
    table = ["| configuration | s | clips/s | RTF | × baseline | same labels |", "|---|---:|---:|---:|---:|---|"]
    table += [f"| {r['configuration']} | {r['seconds']:.2f} | {r['clips_per_second']:.1f} | {r['real_time_factor']:.4f} | "
              f"{r['speedup_vs_baseline']:.2f} | {'yes' if r['labels_equal_baseline'] else 'no'} |" for r in rows]
    text = (f"{args.num_files} clips, {audio_seconds:.0f} s of audio, batch {args.batch_size}, {record['model']}, "
            f"{os.cpu_count()} CPUs, best of {args.repeats}\n\n" + "\n".join(table) + "\n")
    write_text_atomic(os.path.splitext(args.output)[0] + ".md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
