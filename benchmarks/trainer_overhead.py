"""Trainer overhead: `SERTrainer` vs the stock `transformers.Trainer` on the same model and batches.

Both train the same tiny WavLM SER model (same initial weights, same seed) for the same number of
steps on the same synthetic batches (every utterance has the same length, so every batch costs the
same whatever order a sampler picks). The stock Trainer uses the model's own loss (cross-entropy)
and a random sampler; SERTrainer runs

* ``ce``: cross-entropy, no balancing sampler (the like-for-like case);
* ``focal_up``: focal loss with class-weight alpha and the balanced up-sampler (the paper's recipe).

Runs alternate (stock, ser, stock, ser, ...) after one discarded warm-up run each, so drift in the
machine's load hits both alike. Each pair gives a ratio ser/stock of samples per second (wall clock)
and of samples per CPU-second of this process (less sensitive to other processes on a shared CPU);
the median ratio and its spread (min-max, and the inter-quartile range) are printed and saved.

    python benchmarks/trainer_overhead.py [--repetitions 7] [--steps 30] [--batch-size 8]

Writes benchmarks/results/trainer_overhead.json atomically.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

LABELS = ["A", "S", "H", "N"]


class ArrayCollator:
    """Rows -> ``input_values`` (pre-generated waveforms, no decoding) + attention mask + class ids."""

    def __init__(self, waves, targets):
        self.waves, self.targets = waves, targets

    def __call__(self, rows):
        import torch

        values = torch.from_numpy(self.waves[[row["index"] for row in rows]])
        batch = {"input_values": values, "attention_mask": torch.ones(values.shape, dtype=torch.long)}
        batch.update(self.targets(rows))
        return batch


def build(kind: str, variant: str, data, args_common: dict, output_dir: str):
    import torch
    from transformers import Trainer, TrainingArguments

    from ser_hf.configuration import SERSpeechConfig
    from ser_hf.modeling import SERModelForSpeech
    from ser_hf.tiny import tiny_speech_backbone
    from ser_hf.trainer import SERTrainer
    from ser_hf.training_args import SERTrainingArguments

    dataset, collator = data
    torch.manual_seed(0)
    model = SERModelForSpeech(SERSpeechConfig(
        backbone_config=tiny_speech_backbone("wavlm", hidden_size=64, num_layers=2), task="categorical", labels=LABELS,
    ))
    if kind == "stock":
        args = TrainingArguments(output_dir=output_dir, remove_unused_columns=False, **args_common)
        return Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    extra = {} if variant == "ce" else {"loss": "focal", "class_weighting": "inverse", "sampler": "up"}
    args = SERTrainingArguments(output_dir=output_dir, **args_common, **extra)
    return SERTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator)


def timed_run(kind, variant, data, args_common) -> dict:
    with tempfile.TemporaryDirectory() as out:
        trainer = build(kind, variant, data, args_common, out)
        wall, cpu = time.perf_counter(), time.process_time()
        result = trainer.train()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    samples = result.global_step * args_common["per_device_train_batch_size"]
    return {"samples_per_second": samples / wall, "samples_per_cpu_second": samples / cpu, "seconds": wall}


def summarize(ratios: list[float]) -> dict:
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
            "q1": quartiles[0], "q3": quartiles[2], "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.0, help="utterance length")
    parser.add_argument("--variants", nargs="+", default=["ce", "focal_up"], choices=["ce", "focal_up"])
    parser.add_argument("--output", default=os.path.join(HERE, "results", "trainer_overhead.json"))
    args = parser.parse_args()

    import datasets
    import numpy as np
    import torch
    from transformers.utils import logging as hf_logging

    from ser_hf.data.collators import SERTargets
    from ser_hf.io import write_json_atomic

    hf_logging.set_verbosity_error()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n = args.batch_size * args.steps
    waves = rng.standard_normal((n, int(args.seconds * 16000))).astype(np.float32) * 0.1
    labels = rng.choice(LABELS, size=n, p=[0.1, 0.15, 0.25, 0.5]).tolist()
    dataset = datasets.Dataset.from_dict({"id": [f"u{i}" for i in range(n)], "index": list(range(n)), "label": labels})
    data = (dataset, ArrayCollator(waves, SERTargets(labels=LABELS)))
    common = dict(per_device_train_batch_size=args.batch_size, max_steps=args.steps, learning_rate=1e-4,
                  logging_strategy="no", save_strategy="no", eval_strategy="no", report_to=[], disable_tqdm=True,
                  use_cpu=True, seed=0, dataloader_num_workers=0)

    results = {}
    for variant in args.variants:
        timed_run("stock", variant, data, common), timed_run("ser", variant, data, common)  # warm-up, discarded
        runs = {"stock": [], "ser": []}
        for rep in range(args.repetitions):
            for kind in ("stock", "ser") if rep % 2 == 0 else ("ser", "stock"):
                runs[kind].append(timed_run(kind, variant, data, common))
            print(f"{variant} rep {rep + 1}: stock {runs['stock'][-1]['samples_per_second']:.1f} samples/s, "
                  f"ser {runs['ser'][-1]['samples_per_second']:.1f} samples/s", flush=True)
        wall = [s["samples_per_second"] / t["samples_per_second"] for s, t in zip(runs["ser"], runs["stock"])]
        cpu = [s["samples_per_cpu_second"] / t["samples_per_cpu_second"] for s, t in zip(runs["ser"], runs["stock"])]
        results[variant] = {"wall_ratio": summarize(wall), "cpu_ratio": summarize(cpu), "runs": runs}

    print(f"\n{'variant':9} {'ratio (wall)':>13} {'range':>13} {'IQR':>13} {'ratio (cpu)':>12} {'range':>13}")
    for variant, r in results.items():
        w, c = r["wall_ratio"], r["cpu_ratio"]
        print(f"{variant:9} {w['median']:13.3f} {w['min']:6.3f}-{w['max']:.3f} {w['q1']:6.3f}-{w['q3']:.3f} "
              f"{c['median']:12.3f} {c['min']:6.3f}-{c['max']:.3f}")
    result = {
        "benchmark": "trainer_overhead",
        "setup": {"model": "tiny WavLM (2 layers, hidden 64)", "batch_size": args.batch_size, "steps": args.steps,
                  "utterance_seconds": args.seconds, "repetitions": args.repetitions, "torch_threads": 1},
        "results": results,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": os.getloadavg()},
        "command": "python benchmarks/trainer_overhead.py " + " ".join(sys.argv[1:]),
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    write_json_atomic(args.output, result)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
