"""A fusion epoch on cached features vs recomputing the backbones, on the demo's tiny models.

What caching features (``ser-hf extract``) buys: ``ser-hf fuse`` trains the fusion head on stored
pooled vectors, so an epoch never touches audio or encoders. Without the cache every epoch would
decode, featurise and run both backbones (speech: the demo's 2-layer Whisper-style log-mel encoder;
text: the demo's 2-layer BERT) over the same utterances. This script builds the demo corpus (720
synthetic utterances, 480 in train) and the demo's stage configs (`ser_hf.demo.stage_configs`),
trains the speech and text models for one step each (weights do not change the cost), extracts
their features once, then alternates, ``--repetitions`` times:

* **fusion epoch**: `train_fusion` (the `ser-hf fuse` code) for one epoch over the train split with
  the demo's fusion settings (batch 32, multitask, focal + CCC), including the feature join and
  trainer set-up, test split skipped;
* **backbones**: one pass of both encoders over the same train utterances as `extract` runs them
  (eval collator: decoding + feature extraction / tokenisation, batch 32, ``torch.no_grad``) --
  the least a fusion epoch without cached features would cost (no head, no backward).

Wall and process CPU time are reported (one torch thread); the ratio is backbones / fusion epoch.

    python benchmarks/fusion_vs_backbones.py [--repetitions 3]

Writes benchmarks/results/fusion_vs_backbones.json atomically.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
RESULTS = os.path.join(HERE, "results", "fusion_vs_backbones.json")


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def backbone_pass(model_dir: str, data_args, batch_size: int) -> int:
    import torch

    from ser_hf.commands.extract import load_checkpoint
    from ser_hf.experiment import build_collator, load_data, select_split

    model, processor = load_checkpoint(model_dir)
    model.eval()
    rows = select_split(load_data(data_args), "train")
    collator = build_collator(model, processor, max_seconds=None, text_column=data_args.text_column)
    loader = torch.utils.data.DataLoader(rows, batch_size=batch_size, collate_fn=collator)
    seen = 0
    with torch.no_grad():
        for batch in loader:
            inputs = {k: v for k, v in batch.items() if k not in ("labels", "attribute_labels")}
            model(**inputs)
            seen += len(next(iter(inputs.values())))
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    from ser_hf import demo
    from ser_hf.data.corpora.synthetic import load_synthetic

    import datasets

    from ser_hf.trainer import SERTrainer

    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    train_loop_seconds = []  # the fusion Trainer's own train_runtime: the epoch without join / set-up / save
    original_train = SERTrainer.train

    def recording_train(self, *a, **k):
        output = original_train(self, *a, **k)
        train_loop_seconds.append(output.metrics["train_runtime"])
        return output

    SERTrainer.train = recording_train
    with tempfile.TemporaryDirectory() as folder:
        configs = demo.stage_configs(folder)
        for stage in ("speech", "text"):
            configs[stage].update(max_steps=1, disable_tqdm=True)
        configs["fusion"].update(num_train_epochs=1, test_split="none", disable_tqdm=True, logging_strategy="no")
        paths = demo.write_stage_configs(configs, os.path.join(folder, "configs"))
        corpus = load_synthetic(configs["speech"]["data_path"], **configs["speech"]["corpus_options"])
        print("corpus: " + ", ".join(f"{k} {len(v)}" for k, v in corpus.items()), flush=True)
        for stage in ("speech", "text"):
            demo._train_stage(paths[stage], 0)
        _, extract_wall, extract_cpu = timed(lambda: [demo._extract_stage(paths[s]) for s in ("extract_speech", "extract_text")])
        print(f"extract (train+dev+test, both models, once): {extract_wall:.1f} s wall, {extract_cpu:.1f} s CPU", flush=True)
        data = {stage: _data_args(paths[stage]) for stage in ("speech", "text")}
        runs = {"fusion_epoch": [], "backbones": []}
        for rep in range(args.repetitions):
            _, wall, cpu = timed(lambda: demo._fusion_stage(paths["fusion"], 0))
            runs["fusion_epoch"].append({"wall_s": wall, "cpu_s": cpu, "train_loop_wall_s": train_loop_seconds[-1]})
            seen, wall, cpu = timed(lambda: sum(backbone_pass(configs[s]["output_dir"], data[s], args.batch_size) for s in ("speech", "text")))
            runs["backbones"].append({"wall_s": wall, "cpu_s": cpu, "utterances": seen // 2})
            print(f"round {rep + 1}: fusion epoch {runs['fusion_epoch'][-1]['wall_s']:.2f} s wall / "
                  f"{runs['fusion_epoch'][-1]['cpu_s']:.2f} s CPU; both backbones {wall:.2f} s wall / {cpu:.2f} s CPU "
                  f"({seen // 2} utterances)", flush=True)
        train_rows = len(corpus["train"])
    summary = {}
    for name, values in runs.items():
        summary[name] = {key: statistics.median(v[key] for v in values) for key in ("wall_s", "cpu_s")}
        summary[name]["utterances_per_cpu_s"] = train_rows / summary[name]["cpu_s"]
    ratio_cpu = summary["backbones"]["cpu_s"] / summary["fusion_epoch"]["cpu_s"]
    ratio_wall = summary["backbones"]["wall_s"] / summary["fusion_epoch"]["wall_s"]
    pair_ratios = [b["cpu_s"] / f["cpu_s"] for b, f in zip(runs["backbones"], runs["fusion_epoch"])]
    print(f"\ntrain utterances: {train_rows}")
    for name, s in summary.items():
        print(f"{name:13s} median {s['wall_s']:.2f} s wall, {s['cpu_s']:.2f} s CPU, {s['utterances_per_cpu_s']:.0f} utt per CPU-s")
    loop = statistics.median(r["train_loop_wall_s"] for r in runs["fusion_epoch"])
    summary["fusion_epoch"]["train_loop_wall_s"] = loop
    print(f"fusion training loop alone (Trainer train_runtime): median {loop:.2f} s wall, {train_rows / loop:.0f} utt/s; "
          f"backbones / loop: {summary['backbones']['wall_s'] / loop:.1f}x (wall)")
    print(f"backbones / fusion epoch: {ratio_cpu:.1f}x (CPU, per pair {min(pair_ratios):.1f}-{max(pair_ratios):.1f}), {ratio_wall:.1f}x (wall)")
    result = {"benchmark": "fusion_vs_backbones", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "load_average": os.getloadavg(), "train_utterances": train_rows, "extract_once": {"wall_s": extract_wall, "cpu_s": extract_cpu},
              "summary": summary, "ratio_backbones_over_fusion_cpu": ratio_cpu, "ratio_backbones_over_fusion_wall": ratio_wall,
              "pair_ratios_cpu": pair_ratios, "runs": runs}
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS + ".tmp", "w") as handle:
        json.dump(result, handle, indent=2)
    os.replace(RESULTS + ".tmp", RESULTS)


def _data_args(config_path: str):
    """The DataArguments of a stage YAML (the other keys belong to the model and training)."""
    import dataclasses

    import yaml

    from ser_hf.arguments import DataArguments

    values = yaml.safe_load(open(config_path))
    names = {f.name for f in dataclasses.fields(DataArguments)}
    return DataArguments(**{k: v for k, v in values.items() if k in names})


if __name__ == "__main__":
    main()
