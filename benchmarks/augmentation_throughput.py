"""Augmentation throughput on EmoDB: ser-hf's per-example reproducible augmenter vs audiomentations.

Compares, per utterance, (a) decoding alone (the collator's unavoidable cost), (b) ser_hf.data.augment
with noise + gain + low-pass (+ speed, + reverb) and (c) audiomentations' AddColorNoise + Gain +
LowPassFilter (the same chain), all at p=1 on the CPU in one process, and prints utterances/second and
ratios to decoding. Also checks reproducibility: the ser-hf augmenter gives the same output for the same
(seed, epoch, index) twice; audiomentations draws from numpy's global RNG, so it does not unless re-seeded.

    python benchmarks/augmentation_throughput.py --emodb /work/shared/data/emodb --n 100
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--emodb", default=os.environ.get("SER_HF_EMODB", "../shared/data/emodb"))
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--output", default="benchmarks/results/augmentation_throughput.json")
    args = parser.parse_args()
    from ser_hf.data.audio import load_audio
    from ser_hf.data.augment import Augmenter
    from ser_hf.data.randomness import EPOCH_KEY, INDEX_KEY

    files = sorted(glob.glob(os.path.join(args.emodb, "**", "*.wav"), recursive=True))[: args.n]
    t0 = time.perf_counter()
    waves = [load_audio(f, 16000) for f in files]
    decode = time.perf_counter() - t0
    rows = [{"id": str(i), EPOCH_KEY: 0, INDEX_KEY: i} for i in range(len(waves))]
    chains = {
        "ser_hf noise+gain+lowpass": {"noise": {"p": 1.0}, "gain": {"p": 1.0}, "band_limit": {"p": 1.0}},
        "ser_hf noise+gain+lowpass+speed+reverb": {"noise": {"p": 1.0}, "gain": {"p": 1.0}, "band_limit": {"p": 1.0},
                                                   "speed": [0.9, 1.1], "reverb": {"p": 1.0}},
    }
    results = {"utterances": len(waves), "decode_s": decode, "decode_utt_per_s": len(waves) / decode}
    for name, config in chains.items():
        aug = Augmenter.from_config(config, seed=0)
        aug.waveform(waves[0], {**rows[0], EPOCH_KEY: 99})  # warm-up: scipy/librosa imports
        t0 = time.perf_counter()
        first = [aug.waveform(w, r) for w, r in zip(waves, rows)]
        seconds = time.perf_counter() - t0
        again = [aug.waveform(w, r) for w, r in zip(waves, rows)]
        results[name] = {"s": seconds, "utt_per_s": len(waves) / seconds, "cost_vs_decode": seconds / decode,
                         "reproducible": all(np.array_equal(a, b) for a, b in zip(first, again))}
    try:
        from audiomentations import AddColorNoise, Compose, Gain, LowPassFilter

        chain = Compose([AddColorNoise(min_snr_db=5, max_snr_db=20, p=1.0), Gain(p=1.0),
                         LowPassFilter(min_cutoff_freq=3000, max_cutoff_freq=4000, p=1.0)])
        chain(samples=waves[0], sample_rate=16000)  # warm-up
        t0 = time.perf_counter()
        first = [chain(samples=w, sample_rate=16000) for w in waves]
        seconds = time.perf_counter() - t0
        again = [chain(samples=w, sample_rate=16000) for w in waves]
        results["audiomentations noise+gain+lowpass"] = {
            "s": seconds, "utt_per_s": len(waves) / seconds, "cost_vs_decode": seconds / decode,
            "reproducible": all(np.array_equal(a, b) for a, b in zip(first, again)),
        }
    except ImportError:
        results["audiomentations noise+gain+lowpass"] = "not installed"
    print(json.dumps(results, indent=2))
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
