"""Fusion on cached features at corpus scale: utterances/s and peak RSS, new path vs round-1 path.

`ser-hf fuse` trains a ~26k-parameter head on the concatenated audio + text vectors of
`ser-hf extract`. This script writes synthetic feature datasets exactly as `extract_features`
stores them (the demo's widths: audio 128 + text 64, MSP-Podcast's 8 classes + A/V/D), then, each
in a fresh subprocess so that its peak RSS (``ru_maxrss``) is its own:

* ``new``: `join_feature_datasets` (one N x D Arrow array, numpy rows) + `FeatureCollator` +
  `SERTrainer`, one full epoch, at every ``--rows`` size;
* ``old``: the round-1 join (``Dataset.from_dict`` of a list of numpy rows, Python-list rows)
  and collator, copied below, on the smallest size only and for ``--old-steps`` steps (a full
  epoch took 75 s at 10k rows); its utterances/s is measured over those steps.

Training settings follow recipes/demo/fusion.yaml (focal loss, sqrt-inverse weights, multitask,
batch 32). The parent never imports torch, so a child's ``ru_maxrss`` is not inflated by it.

    python benchmarks/fusion_scale.py [--rows 10000 100000] [--old-steps 100]

Prints a table and writes benchmarks/results/fusion_scale.json atomically.
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WIDTHS = {"audio": 128, "text": 64}
LABELS = ["A", "S", "H", "U", "F", "D", "C", "N"]


# ------------------------------------------------------------------------------ child: data
def write_blocks(folder: str, rows: int) -> dict[str, str]:
    """Two feature datasets as `extract_features` saves them (text rows in another order)."""
    import datasets
    import numpy as np

    from ser_hf.features import _save_dataset_atomically, feature_schema

    rng = np.random.default_rng(0)
    ids = [f"utt{i:07d}" for i in range(rows)]
    labels = rng.choice(LABELS, size=rows, p=[0.08, 0.1, 0.15, 0.04, 0.02, 0.03, 0.03, 0.55]).tolist()
    avd = rng.uniform(1, 7, size=(rows, 3)).round(3)
    split = rng.choice(["train", "dev", "test"], size=rows, p=[1.0, 0.0, 0.0]).tolist()
    paths = {}
    for name, width in WIDTHS.items():
        order = np.arange(rows) if name == "audio" else rng.permutation(rows)
        vectors = rng.standard_normal((rows, width)).astype(np.float32)

        def gen(order=order, vectors=vectors):
            for start in range(0, rows, 10_000):
                chunk = order[start : start + 10_000]
                yield {
                    "id": [ids[i] for i in chunk], "features": list(vectors[chunk]),
                    "label": [labels[i] for i in chunk], "arousal": avd[chunk, 0].tolist(),
                    "valence": avd[chunk, 1].tolist(), "dominance": avd[chunk, 2].tolist(),
                    "speaker": ["spk"] * len(chunk), "gender": ["F"] * len(chunk), "split": [split[i] for i in chunk],
                }

        def rows_of(gen=gen):
            for batch in gen():
                for k in range(len(batch["id"])):
                    yield {key: value[k] for key, value in batch.items()}

        ds = datasets.Dataset.from_generator(rows_of, features=feature_schema(), cache_dir=os.path.join(folder, "cache"))
        meta = {"feature_size": width, "labels": LABELS, "label_names": None, "attribute_range": [1.0, 7.0]}
        paths[name] = os.path.join(folder, f"{name}_{rows}")
        _save_dataset_atomically(ds, paths[name], meta)
    return paths


# ------------------------------------------------------------------------------ child: round-1 path
def old_join(blocks):
    """Round-1 `join_feature_datasets` (commit 359fd86): a list of numpy rows through Dataset.from_dict."""
    import datasets
    import numpy as np

    from ser_hf.features import COPIED_COLUMNS, feature_schema
    from ser_hf.modeling.fusion import ordered_blocks

    widths = {name: len(ds[0]["features"]) for name, ds in blocks.items()}
    order = list(ordered_blocks(widths))
    first = blocks[order[0]]
    ids = list(first["id"])
    index_of = {name: {row_id: i for i, row_id in enumerate(list(blocks[name]["id"]))} for name in order}
    features = [blocks[n].with_format("numpy")["features"][:].astype(np.float32) for n in order]
    vectors = [features[0]]
    columns = {name: list(first[name]) for name in COPIED_COLUMNS if name in first.column_names}
    for k, name in enumerate(order[1:], start=1):
        rows = np.asarray([index_of[name][i] for i in ids], dtype=np.int64)
        vectors.append(features[k][rows])
        other = blocks[name]
        for column, values in columns.items():
            theirs = list(other[column])
            bad = [ids[j] for j, r in enumerate(rows) if values[j] != theirs[r] and values[j] == values[j]]
            assert not bad
    joined = {"id": ids, "features": list(np.concatenate(vectors, axis=1))}
    joined.update(columns)
    schema = datasets.Features({k: feature_schema()[k] for k in joined})
    return datasets.Dataset.from_dict(joined, features=schema)


class OldFeatureCollator:
    """Round-1 `FeatureCollator.__call__`: Python-list rows -> np.asarray -> torch.tensor."""

    def __init__(self, targets):
        self.targets = targets

    def __call__(self, rows):
        import numpy as np
        import torch

        width = len(rows[0]["features"])
        for row in rows:
            if len(row["features"]) != width:
                raise ValueError("width")
        batch = {"features": torch.tensor(np.asarray([row["features"] for row in rows], dtype=np.float32))}
        batch.update(self.targets(rows))
        return batch


# ------------------------------------------------------------------------------ child: one run
def child(path: str, rows: int, mode: str, max_steps: int) -> dict:
    import resource

    import psutil

    def rss_mib() -> float:
        return psutil.Process().memory_info().rss / 2**20

    import torch  # noqa: F401  (imports first, so the baseline includes them)

    from ser_hf.data.collators import SERTargets
    from ser_hf.features import FeatureCollator, join_feature_datasets, load_features
    from ser_hf.modeling.fusion import SERFusionConfig, SERFusionModel
    from ser_hf.trainer import SERTrainer
    from ser_hf.training_args import SERTrainingArguments

    torch.set_num_threads(1)
    paths = json.load(open(path))[str(rows)]
    baseline = rss_mib()
    start = time.perf_counter()
    blocks = {name: load_features(p) for name, p in paths.items()}
    joined = old_join(blocks) if mode == "old" else join_feature_datasets(blocks)
    join_seconds = time.perf_counter() - start
    rss_after_join = rss_mib()
    config = SERFusionConfig(input_sizes=WIDTHS, task="multitask", labels=LABELS, activation="mish",
                             head_hidden_size=64, head_dropout=0.2, input_dropout=0.1, attribute_range=[1.0, 7.0])
    model = SERFusionModel(config)
    with tempfile.TemporaryDirectory() as out:
        args = SERTrainingArguments(
            output_dir=out, per_device_train_batch_size=32, learning_rate=1e-3, weight_decay=0.01, loss="focal",
            class_weighting="sqrt_inverse", num_train_epochs=1, max_steps=max_steps, save_strategy="no",
            eval_strategy="no", logging_strategy="no", report_to=[], disable_tqdm=True, use_cpu=True, seed=0,
        )
        targets = SERTargets.for_config(config)
        collator = OldFeatureCollator(targets) if mode == "old" else FeatureCollator(targets)
        trainer = SERTrainer(model=model, args=args, train_dataset=joined, data_collator=collator)
        setup_start = time.perf_counter()
        trainer.get_train_dataloader()  # sampler set-up (class ids of every row) counted apart from the steps
        setup_seconds = time.perf_counter() - setup_start
        rss_after_setup = rss_mib()
        cpu_start = time.process_time()
        result = trainer.train()
        cpu_seconds = time.process_time() - cpu_start
    steps = result.global_step
    utterances = steps * 32 if max_steps > 0 else len(joined)
    train_seconds = result.metrics["train_runtime"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "mode": mode, "rows": rows, "steps": steps, "utterances": utterances, "join_seconds": join_seconds,
        "sampler_setup_seconds": setup_seconds, "train_seconds": train_seconds,
        "utterances_per_second": utterances / train_seconds, "train_cpu_seconds": cpu_seconds,
        "utterances_per_cpu_second": utterances / cpu_seconds, "ms_per_step": 1e3 * train_seconds / steps,
        "epoch_seconds": join_seconds + len(joined) / (utterances / train_seconds),
        "epoch_cpu_seconds": join_seconds + len(joined) / (utterances / cpu_seconds),
        "baseline_rss_mib": baseline, "rss_after_join_mib": rss_after_join, "rss_after_setup_mib": rss_after_setup, "peak_rss_mib": peak, "peak_over_baseline_mib": peak - baseline,
        "feature_matrix_mib": rows * sum(WIDTHS.values()) * 4 / 2**20,
    }


# ------------------------------------------------------------------------------ parent
def run_child(*arguments: str) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, __file__, *arguments], env=env, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-5000:])
        raise SystemExit(f"child {arguments} failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--old-steps", type=int, default=100, help="steps timed on the round-1 path (smallest size)")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "fusion_scale.json"))
    parser.add_argument("--child", nargs=4, metavar=("PATHS", "ROWS", "MODE", "STEPS"), help=argparse.SUPPRESS)
    parser.add_argument("--write", nargs=2, metavar=("FOLDER", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        print(json.dumps(write_blocks(args.write[0], int(args.write[1]))))
        return
    if args.child:
        path, rows, mode, steps = args.child
        print(json.dumps(child(path, int(rows), mode, int(steps))))
        return

    with tempfile.TemporaryDirectory() as folder:
        paths = {str(rows): run_child("--write", folder, str(rows)) for rows in args.rows}
        paths_file = os.path.join(folder, "paths.json")
        json.dump(paths, open(paths_file, "w"))
        smallest = str(min(args.rows))
        runs = []
        # Same run, alternating on the smallest size: old, new, old, new would cost minutes; one each.
        runs.append(run_child("--child", paths_file, smallest, "old", str(args.old_steps)))
        for rows in sorted(args.rows):
            runs.append(run_child("--child", paths_file, str(rows), "new", "-1"))
    old = runs[0]
    new_small = next(r for r in runs if r["mode"] == "new" and str(r["rows"]) == smallest)
    print(f"{'path':5} {'rows':>7} {'join s':>7} {'utt/s':>9} {'utt/cpu-s':>9} {'ms/step':>8} {'epoch s':>8} "
          f"{'epoch cpu-s':>11} {'peak RSS MiB':>12} "
          f"{'over base':>9} {'features MiB':>12}")
    for r in runs:
        print(f"{r['mode']:5} {r['rows']:7d} {r['join_seconds']:7.2f} {r['utterances_per_second']:9.0f} "
              f"{r['utterances_per_cpu_second']:9.0f} {r['ms_per_step']:8.2f} {r['epoch_seconds']:8.1f} "
              f"{r['epoch_cpu_seconds']:11.1f} {r['peak_rss_mib']:12.0f} "
              f"{r['peak_over_baseline_mib']:9.0f} {r['feature_matrix_mib']:12.1f}")
    ratio = new_small["utterances_per_second"] / old["utterances_per_second"]
    cpu_ratio = new_small["utterances_per_cpu_second"] / old["utterances_per_cpu_second"]
    rss_ratio = old["peak_over_baseline_mib"] / max(new_small["peak_over_baseline_mib"], 1e-9)
    print(f"new/old at {smallest} rows: {ratio:.1f}x utterances/s ({cpu_ratio:.1f}x per CPU-second), "
          f"{rss_ratio:.1f}x less RSS over baseline")
    result = {
        "benchmark": "fusion_scale", "runs": runs, "speedup_utterances_per_second": ratio, "speedup_per_cpu_second": cpu_ratio,
        "rss_over_baseline_ratio_old_over_new": rss_ratio,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "command": "python benchmarks/fusion_scale.py " + " ".join(sys.argv[1:]),
    }
    sys.path.insert(0, ROOT)
    from ser_hf.io import write_json_atomic

    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    write_json_atomic(args.output, result)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
