"""An EmoDB model under torch, onnxruntime and onnxruntime int8: same predictions? what accuracy?

Trains the EmoDB recipe (``recipes/emodb/config.yaml``, a short epoch budget) or takes ``--model``,
exports it with `ser-hf export --quantize`, and runs `ser-hf predict` on the held-out test speakers
(03 and 08, 107 utterances) with each backend. Reports UAR / accuracy per backend, how many labels
agree with torch, the largest probability difference, and the time each took.

    python benchmarks/onnx_emodb.py [--data_path ../shared/data/emodb] [--epochs 6] [--model DIR]

Writes ``benchmarks/results/onnx_emodb.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_path", default=os.path.join(ROOT, "..", "shared", "data", "emodb"))
    parser.add_argument("--epochs", type=float, default=6)
    parser.add_argument("--model", default=None, help="A trained EmoDB speech model (default: train the recipe).")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "onnx_emodb.json"))
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    import numpy as np
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    from ser_hf.data.corpora import get_corpus_spec, load_corpus
    from ser_hf.export import export_onnx
    from ser_hf.inference import predict
    from ser_hf.io import write_json_atomic, write_text_atomic

    work = tempfile.mkdtemp(prefix="ser_hf_onnx_emodb_")
    model_dir = args.model
    train_seconds = None
    if model_dir is None:
        model_dir = os.path.join(work, "model")
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "ser_hf.cli", "train", "--config", os.path.join(ROOT, "recipes", "emodb", "config.yaml"),
             "--data_path", args.data_path, "--num_train_epochs", str(args.epochs), "--output_dir", model_dir,
             "--disable_tqdm", "true"],
            check=True, env={**os.environ, "PYTHONPATH": ROOT},
        )
        train_seconds = time.perf_counter() - start
    onnx_dir = os.path.join(work, "onnx")
    record = export_onnx(model_dir, onnx_dir, quantize=True)

    spec = get_corpus_spec("emodb")
    test = load_corpus("emodb", args.data_path)["test"]
    files = [row["audio"] for row in test]
    # A model trained with `label_map: shared` predicts neutral/happy/angry/sad: EmoDB's names mapped
    # onto those, and its other classes left out of UAR/accuracy (label agreement counts every file).
    shared = {"anger": "angry", "happiness": "happy", "sadness": "sad"}
    from ser_hf.finetuning import load_ser_config

    model_labels = set(load_ser_config(model_dir).id2label.values())
    truth = [spec.label_names[row["label"]] for row in test]
    if not set(truth) <= model_labels:
        truth = [shared.get(name, name) for name in truth]
    scored = [i for i, name in enumerate(truth) if name in model_labels]
    runs = {}
    for name, model, kwargs in (
        ("torch", model_dir, {"backend": "torch"}),
        ("onnxruntime", onnx_dir, {"backend": "onnx"}),
    ):
        start = time.perf_counter()
        results = predict(model, files, batch_size=16, device="cpu", progress=False, **kwargs)
        runs[name] = (results, time.perf_counter() - start)
    # The int8 graph: the same folder, the quantised file.
    from ser_hf import inference
    from ser_hf.export.onnx_runtime import ORTSERModel

    quantized = ORTSERModel(onnx_dir, quantized=True)
    _, processor = inference.load_model(onnx_dir, backend="onnx")
    start = time.perf_counter()
    results = predict(quantized, files, processor=processor, batch_size=16, progress=False)
    runs["onnxruntime int8"] = (results, time.perf_counter() - start)

    by_file = {name: {row["file"]: row for row in results.files} for name, (results, _) in runs.items()}
    rows = []
    reference = by_file["torch"]
    for name, (results, seconds) in runs.items():
        predicted = [by_file[name][f]["label"] for f in files]
        diff = max(
            abs(by_file[name][f]["probabilities"][c] - reference[f]["probabilities"][c]) for f in files for c in reference[f]["probabilities"]
        )
        kept_truth, kept = [truth[i] for i in scored], [predicted[i] for i in scored]
        rows.append({
            "backend": name, "uar": round(balanced_accuracy_score(kept_truth, kept), 4), "accuracy": round(accuracy_score(kept_truth, kept), 4),
            "labels_equal_torch": int(sum(p == reference[f]["label"] for p, f in zip(predicted, files))),
            "max_probability_diff_vs_torch": float(f"{diff:.3g}"), "seconds": round(seconds, 2),
        })
    out = {
        "benchmark": "onnx_emodb", "test_utterances": len(files), "model": model_dir if args.model else "recipes/emodb/config.yaml",
        "epochs": None if args.model else args.epochs, "train_seconds": None if train_seconds is None else round(train_seconds, 1),
        "export_parity_max_abs_diff": record["parity_max_abs_diff"], "int8_export_max_abs_diff": record["quantized"]["max_abs_diff"],
        "onnx_bytes": os.path.getsize(os.path.join(onnx_dir, "model.onnx")),
        "int8_bytes": os.path.getsize(os.path.join(onnx_dir, "model.int8.onnx")), "rows": rows,
        "scored_utterances": len(scored), "classes": sorted(model_labels),
        "chance_uar": round(1 / len(model_labels), 4), "numpy": np.__version__,
    }
    write_json_atomic(args.output, out)
    table = ["| backend | UAR | accuracy | labels = torch | max prob diff | seconds |", "|---|---:|---:|---:|---:|---:|"]
    table += [f"| {r['backend']} | {r['uar']:.3f} | {r['accuracy']:.3f} | {r['labels_equal_torch']}/{len(files)} | "
              f"{r['max_probability_diff_vs_torch']:.2g} | {r['seconds']:.1f} |" for r in rows]
    text = (f"EmoDB test speakers 03+08 ({len(files)} utterances, {len(scored)} in the model's {len(model_labels)} classes "
            f"scored); model: {out['model']}; model.onnx {out['onnx_bytes'] / 1e6:.1f} MB, "
            f"model.int8.onnx {out['int8_bytes'] / 1e6:.1f} MB\n\n" + "\n".join(table) + "\n")
    write_text_atomic(os.path.splitext(args.output)[0] + ".md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
