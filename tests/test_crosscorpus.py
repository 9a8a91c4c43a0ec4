"""Label maps to a shared class set and `ser-hf crosscorpus` (train on A, test on B for every pair).
The sweep test trains two one-epoch tiny models on two differently seeded synthetic corpora."""
from __future__ import annotations

import csv
import json
import math
import os

import pytest
import yaml

from ser_hf.sweeps.runner import SweepEngine
from ser_hf.data.label_maps import SHARED_CLASSES, apply_label_map, resolve_label_map
from ser_hf.data.schema import rows_to_dataset_dict
from ser_hf.sweeps.crosscorpus import OUTPUT_FILES, parse_corpora, run_crosscorpus

from test_ablation import base_config

SYN_A = {"corpus": "synthetic", "corpus_options": {"num_utterances": 96, "num_speakers": 6}}
SYN_B = {"corpus": "synthetic", "corpus_options": {"num_utterances": 64, "num_speakers": 6, "seed": 1}}


def emodb_like():
    rows = [{"id": f"{i}", "audio": "/x.wav", "label": label, "speaker": "03", "split": "train" if i < 5 else "test",
             "label_distribution": [1.0, 0.0]} for i, label in enumerate(["W", "L", "N", "F", "A", "T", "E", "W"])]  # fmt: skip
    return rows_to_dataset_dict(rows)


def test_shared_label_map_renames_drops_and_counts():
    corpus, dropped = apply_label_map(emodb_like(), "emodb", resolve_label_map("shared"))
    assert corpus["train"]["label"] == ["angry", "neutral", "happy"] and corpus["test"]["label"] == ["sad", "angry"]
    assert dict(dropped["train"]) == {"L": 1, "A": 1} and dict(dropped["test"]) == {"E": 1}
    assert "label_distribution" not in corpus["train"].column_names  # its class list no longer applies
    assert corpus["train"].column_names[:4] == ["id", "audio", "transcript", "label"]
    with pytest.raises(ValueError, match="no entry for corpus 'nosuch'"):
        apply_label_map(emodb_like(), "nosuch", resolve_label_map("shared"))


def test_custom_label_map_file_and_data_arguments(tmp_path):
    from ser_hf.arguments import DataArguments
    from ser_hf.experiment import corpus_labels

    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump({"classes": ["low", "high"], "corpora": {"emodb": {"T": "low", "W": "high", "F": "high"}}}))
    custom = resolve_label_map(str(path))
    corpus, dropped = apply_label_map(emodb_like(), "EmoDB", custom)
    assert corpus["train"]["label"] == ["high", "high"] and sum(dropped["train"].values()) == 3
    labels, names, _ = corpus_labels(DataArguments(corpus="emodb", label_map="shared"))
    assert labels == list(SHARED_CLASSES) and names["sad"] == "sad"
    with pytest.raises(ValueError, match="neither a built-in map"):
        resolve_label_map("nope")
    path.write_text(yaml.safe_dump({"classes": ["low"], "corpora": {"emodb": {"T": "lowest"}}}))
    with pytest.raises(ValueError, match="not among its classes"):
        apply_label_map(emodb_like(), "emodb", resolve_label_map(str(path)))


def test_parse_corpora():
    assert parse_corpora(["emodb=/data/emodb", "synthetic"]) == {"emodb": {"data_path": "/data/emodb"}, "synthetic": {}}
    with pytest.raises(ValueError, match="given twice"):
        parse_corpora(["a", "a"])


def test_crosscorpus_matrix_heatmap_and_resume(tmp_path):
    config = {**base_config(), "train_split": "train+dev", "eval_split": "none"}
    config.pop("corpus_options")
    out = tmp_path / "cc"
    lines: list[str] = []
    report = run_crosscorpus(config, {"syn_a": SYN_A, "syn_b": SYN_B}, seeds=[0], output_dir=str(out),
                             engine=SweepEngine(devices="cpu", progress=lines.append))  # fmt: skip
    assert (report.counts.ran, report.counts.ok) == (2, 2)
    table = report.matrix["macro_f1"]
    assert all(0.0 <= table[a][b] <= 1.0 for a in ("syn_a", "syn_b") for b in ("syn_a", "syn_b"))
    # The diagonal is the model's own test split: the same number the training run recorded.
    own = json.loads((out / "runs" / "train-syn_a" / "seed0" / "test_metrics.json").read_text())
    assert table["syn_a"]["syn_a"] == pytest.approx(own["macro_f1"], abs=1e-6)
    transfer = json.loads((out / "runs" / "train-syn_a" / "seed0" / "transfer_metrics.json").read_text())
    assert transfer["syn_b"]["num_examples"] > 0 and transfer["syn_b"]["corpus"] == "synthetic"
    rows = list(csv.DictReader(open(out / OUTPUT_FILES["csv"])))
    assert [(r["train"], r["test"], r["status"]) for r in rows] == [
        ("syn_a", "syn_a", "ok"), ("syn_a", "syn_b", "ok"), ("syn_b", "syn_a", "ok"), ("syn_b", "syn_b", "ok")]
    text = (out / OUTPUT_FILES["md"]).read_text()
    assert "| train \\ test | syn_a | syn_b |" in text and "neutral, happy, angry, sad" in text
    # The synthetic corpus has 8 classes: the 4 outside the shared set are dropped and counted.
    assert report.dropped["syn_a"]["kept"] + report.dropped["syn_a"]["dropped"] == 96
    assert all(f"({code})" in report.dropped["syn_a"]["dropped_classes"] for code in "UFDC")
    assert "| syn_a | " in text and "surprise (U)" in text

    import matplotlib.image

    from ser_hf.plotting import figure_pixels
    from ser_hf.sweeps.plots import matrix_size

    image = matplotlib.image.imread(report.heatmap)
    assert image.shape[:2] == figure_pixels(matrix_size(2))[::-1] and image[..., :3].std() > 0.05

    again = run_crosscorpus(config, {"syn_a": SYN_A, "syn_b": SYN_B}, seeds=[0], output_dir=str(out),
                            engine=SweepEngine(devices="cpu", progress=lines.append))  # fmt: skip
    assert (again.counts.ran, again.counts.skipped) == (0, 2)
    assert not math.isnan(again.matrix["uar"]["syn_b"]["syn_a"])


def test_crosscorpus_validates_before_running(tmp_path, capsys):
    from ser_hf.commands.crosscorpus import main

    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump({**base_config(), "eval_split": "none"}))
    out = str(tmp_path / "o")
    assert main(["--config", str(config), "--corpora", "synthetic", "--output_dir", out]) == 2
    assert "at least two corpora" in capsys.readouterr().err
    assert main(["--config", str(config), "--corpora", "synthetic", "manifest=/x.csv", "--output_dir", out]) == 2
    assert "no entry for corpus 'manifest'" in capsys.readouterr().err
    assert main(["--config", str(config), "--corpora", "synthetic", "emodb=/x", "--set", "corpus=emodb", "--output_dir", out]) == 2
    assert "set per corpus" in capsys.readouterr().err
    assert not os.path.exists(os.path.join(out, "runs"))
