"""Decoding speed per process: the speech collator's decode + resample + feature path vs librosa.

Writes ``--files`` 48 kHz 16-bit mono WAVs of MSP-like lengths (lognormal, median 5 s, 2.75-11 s)
and times, in alternating repetitions within one process (one thread, as in a DataLoader worker):

* ``collator``: `SpeechCollator` (training mode: decode with soundfile, soxr to 16 kHz, 12 s crop,
  WavLM normalisation and padding in one buffer, `ser_hf.data.collators.normalise_and_pad`) on
  batches of 8 rows;
* ``collator (extractor)``: the same collator through the feature extractor's own per-utterance
  path (what it did before; the baseline of the change);
* ``soundfile+soxr``: `soundfile.read` + `soxr.resample` alone (decode + resample floor);
* ``soundfile``: `soundfile.read` alone, float32 (the decode-only floor: no resampling at all);
* ``soxr``: `soxr.resample` (HQ, the quality training uses) of the decoded arrays alone;
* ``librosa``: ``librosa.load(path, sr=16000)`` (the baseline named in the issue).

Speed is audio seconds decoded per wall second ("x real time"); medians over repetitions and the
ratio collator / librosa measured in the same run.

    python benchmarks/decode_speed.py [--files 64] [--repetitions 5]

Writes benchmarks/results/decode_speed.json atomically.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--output", default=os.path.join(HERE, "results", "decode_speed.json"))
    args = parser.parse_args()

    import librosa
    import soundfile as sf
    import soxr
    import torch

    from ser_hf.configuration import SERSpeechConfig
    from ser_hf.data.collators import SERTargets, SpeechCollator
    from ser_hf.io import write_json_atomic
    from ser_hf.modeling import build_feature_extractor
    from ser_hf.tiny import tiny_speech_backbone

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(np.log(5.0), 0.5, args.files), 2.75, 11.0)
    total_seconds = float(lengths.sum())
    extractor = build_feature_extractor(SERSpeechConfig(backbone_config=tiny_speech_backbone("wavlm"), labels=["a"]))
    collator = SpeechCollator(extractor, SERTargets(), max_seconds=12.0).train_mode(seed=0)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i, seconds in enumerate(lengths):
            path = os.path.join(folder, f"u{i}.wav")
            t = np.arange(int(seconds * 48000)) / 48000
            wave = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
            sf.write(path, wave.astype(np.float32), 48000, subtype="PCM_16")
            paths.append(path)
        rows = [{"id": str(i), "audio": p} for i, p in enumerate(paths)]

        def run_collator():
            for start in range(0, len(rows), 8):
                collator(rows[start : start + 8])

        def run_extractor_collator():
            import ser_hf.data.collators as collators

            fast = collators._is_plain_waveform_extractor
            collators._is_plain_waveform_extractor = lambda extractor: False
            try:
                run_collator()
            finally:
                collators._is_plain_waveform_extractor = fast

        def run_decode_only():
            for path in paths:
                sf.read(path, dtype="float32")

        decoded = [sf.read(path, dtype="float32")[0] for path in paths]

        def run_resample_only():
            for wave in decoded:
                soxr.resample(wave, 48000, 16000)

        def run_soundfile():
            for path in paths:
                wave, rate = sf.read(path, dtype="float32")
                soxr.resample(wave, rate, 16000)

        def run_librosa():
            for path in paths:
                librosa.load(path, sr=16000)

        paths_to_time = {"collator": run_collator, "collator (extractor)": run_extractor_collator,
                         "soundfile+soxr": run_soundfile, "soundfile": run_decode_only, "soxr": run_resample_only,
                         "librosa": run_librosa}
        for fn in paths_to_time.values():  # warm-up: page cache, imports, soxr plans
            fn()
        speeds: dict[str, list[float]] = {name: [] for name in paths_to_time}
        cpu_speeds: dict[str, list[float]] = {name: [] for name in paths_to_time}
        order = list(paths_to_time)
        for rep in range(args.repetitions):
            for name in order if rep % 2 == 0 else order[::-1]:
                wall, cpu = time.perf_counter(), time.process_time()
                paths_to_time[name]()
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                speeds[name].append(total_seconds / wall)
                cpu_speeds[name].append(total_seconds / cpu)
    summary = {
        name: {"median_x_realtime": statistics.median(v), "min": min(v), "max": max(v),
               "median_x_realtime_per_cpu_second": statistics.median(cpu_speeds[name])}
        for name, v in speeds.items()
    }
    ratios = [c / l for c, l in zip(speeds["collator"], speeds["librosa"])]
    before = [c / e for c, e in zip(speeds["collator"], speeds["collator (extractor)"])]
    print(f"{args.files} files, {total_seconds:.0f} s of 48 kHz audio, {args.repetitions} alternating repetitions")
    print(f"{'path':22} {'x real time':>11} {'range':>17} {'x per CPU-s':>11}")
    for name, s in summary.items():
        print(f"{name:22} {s['median_x_realtime']:11.0f} {s['min']:8.0f}-{s['max']:<8.0f} "
              f"{s['median_x_realtime_per_cpu_second']:11.0f}")
    print(f"collator / librosa (same run): median {statistics.median(ratios):.2f}x; "
          f"collator / collator (extractor): median {statistics.median(before):.2f}x")
    result = {"benchmark": "decode_speed", "files": args.files, "audio_seconds": total_seconds, "summary": summary,
              "collator_over_librosa": {"median": statistics.median(ratios), "ratios": ratios},
              "collator_over_extractor_path": {"median": statistics.median(before), "ratios": before},
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
              "command": "python benchmarks/decode_speed.py " + " ".join(sys.argv[1:])}
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    write_json_atomic(args.output, result)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
