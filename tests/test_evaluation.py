"""Evaluation report: numbers against sklearn / an independent CCC, files, figures, submissions,
and `ser-hf evaluate` end to end on tiny saved models and a generated manifest corpus."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from helpers_audio import write_wav
from ser_hf.configuration import SERConfig
from ser_hf.evaluation.report import FILES, Predictions, compute_evaluation, display_names, write_evaluation_report
from ser_hf.plotting import bar_chart, bar_chart_size, confusion_matrix_figure, confusion_matrix_size, figure_pixels, scatter_size

LABELS = ["A", "S", "H", "N"]
NAMES = {"A": "angry", "S": "sad", "H": "happy", "N": "neutral"}
ATTRS = ["arousal", "valence", "dominance"]
RESAMPLES = 200


def reference_ccc(x, y):
    cov = np.cov(x, y, bias=True)
    return 2 * cov[0, 1] / (cov[0, 0] + cov[1, 1] + (np.mean(x) - np.mean(y)) ** 2)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def png_size(path):
    with Image.open(path) as image:
        image.verify()  # raises on a truncated or corrupt file
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def hand_made(n=120, seed=0):
    """Rows and predictions with known structure: 1 in 10 rows unlabelled, 1 in 15 without gender."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, len(LABELS), n)
    logits = rng.normal(size=(n, len(LABELS)))
    logits[np.arange(n), truth] += 1.2
    avd = rng.uniform(1, 7, (n, 3))
    attributes = 0.6 * avd + 1.5 + rng.normal(0, 0.8, (n, 3))
    rows = []
    for i in range(n):
        rows.append(
            dict(
                id=f"utt{i:03d}",
                audio=f"/data/audio/utt{i:03d}.wav",
                label=None if i % 10 == 0 else LABELS[truth[i]],
                arousal=float(avd[i, 0]),
                valence=None if i % 7 == 0 else float(avd[i, 1]),
                dominance=float(avd[i, 2]),
                speaker=f"spk{i % 4}",
                gender=None if i % 15 == 0 else "MF"[i % 2],
            )
        )
    return rows, Predictions(logits=logits, attributes=attributes)


# ---------------------------------------------------------------------------------- report writer
def test_report_numbers_files_and_figures_on_hand_made_predictions(tmp_path):
    rows, predictions = hand_made()
    config = SERConfig(task="multitask", labels=LABELS, label_names=NAMES)
    report = write_evaluation_report(tmp_path, predictions, rows, config, title="hand made", n_resamples=RESAMPLES)
    on_disk = json.loads((tmp_path / FILES["metrics"]).read_text())
    assert on_disk["macro_f1"] == pytest.approx(report["macro_f1"])
    assert sorted(on_disk["files"]) == sorted(os.listdir(tmp_path))  # every file listed, no temp files left

    # classification numbers over labelled rows only, against sklearn
    labelled = [i for i, row in enumerate(rows) if row["label"] is not None]
    truth = np.array([LABELS.index(rows[i]["label"]) for i in labelled])
    predicted = predictions.logits.argmax(1)[labelled]
    assert report["num_examples"] == len(rows) and report["num_labelled"] == len(labelled) == 108
    assert report["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro", labels=range(4)))
    assert report["uar"] == pytest.approx(balanced_accuracy_score(truth, predicted))
    assert report["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=range(4), zero_division=0)
    per_class = read_csv(tmp_path / FILES["per_class"])
    assert [r["class"] for r in per_class] == LABELS
    assert [r["name"] for r in per_class] == ["angry (A)", "sad (S)", "happy (H)", "neutral (N)"]
    for k, line in enumerate(per_class):
        assert float(line["precision"]) == pytest.approx(precision[k], abs=1e-5)
        assert float(line["recall"]) == pytest.approx(recall[k], abs=1e-5)
        assert float(line["f1"]) == pytest.approx(f1[k], abs=1e-5)
        assert int(line["support"]) == support[k] == report["per_class"][LABELS[k]]["support"]
    expected_counts = confusion_matrix(truth, predicted, labels=range(4))
    assert report["confusion_matrix"]["counts"] == expected_counts.tolist()
    csv_counts = [[int(v) for k, v in line.items() if k != "true \\ predicted"] for line in read_csv(tmp_path / FILES["confusion_csv"])]
    assert csv_counts == expected_counts.tolist()

    # CCC per attribute leaves unrated rows out of that attribute only
    for j, name in enumerate(ATTRS):
        rated = [i for i, row in enumerate(rows) if row[name] is not None]
        true_values = np.array([rows[i][name] for i in rated])
        assert report[f"ccc_{name}"] == pytest.approx(reference_ccc(predictions.attributes[rated, j], true_values))
    assert report["num_annotated_valence"] == sum(1 for i in range(len(rows)) if i % 7) < len(rows)
    assert report["ccc_mean"] == pytest.approx(np.mean([report[f"ccc_{a}"] for a in ATTRS]))

    # 95% bootstrap intervals bracket the point estimates and are not degenerate
    intervals = report["confidence_intervals"]
    assert intervals["level"] == 0.95 and intervals["n_resamples"] == RESAMPLES
    for key in ("macro_f1", "uar", "ccc_arousal", "ccc_valence", "ccc_dominance", "ccc_mean"):
        interval = intervals[key]
        assert interval["estimate"] == report[key]
        assert interval["low"] < report[key] < interval["high"], key
        assert interval["high"] - interval["low"] < 0.5
    assert intervals["macro_f1"]["n"] == len(labelled)

    # breakdowns: gender (rows without gender counted, not guessed) and speaker
    gender = report["by_gender"]
    assert gender["rows_without_value"] == 8 and set(gender["groups"]) == {"F", "M"}
    males = [i for i in labelled if rows[i]["gender"] == "M"]
    male_truth = [LABELS.index(rows[i]["label"]) for i in males]
    male_pred = predictions.logits.argmax(1)[males]
    assert gender["groups"]["M"]["n_labelled"] == len(males)
    assert gender["groups"]["M"]["macro_f1"] == pytest.approx(f1_score(male_truth, male_pred, average="macro"))
    assert gender["groups"]["M"]["uar"] == pytest.approx(balanced_accuracy_score(male_truth, male_pred))
    by_speaker = read_csv(tmp_path / FILES["by_speaker"])
    assert [line["speaker"] for line in by_speaker] == ["spk0", "spk1", "spk2", "spk3"]
    assert sum(int(line["n"]) for line in by_speaker) == len(rows)
    spk1 = [i for i, row in enumerate(rows) if row["speaker"] == "spk1"]
    assert float(by_speaker[1]["ccc_arousal"]) == pytest.approx(
        reference_ccc(predictions.attributes[spk1, 0], [rows[i]["arousal"] for i in spk1]), abs=1e-5
    )

    # predictions CSV: every row, aligned, probabilities sum to one, argmax is the predicted class
    lines = read_csv(tmp_path / FILES["predictions"])
    assert [line["id"] for line in lines] == [row["id"] for row in rows]
    probabilities = np.array([[float(line[f"prob_{c}"]) for c in LABELS] for line in lines])
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-4)
    assert [line["predicted_label"] for line in lines] == [LABELS[k] for k in predictions.logits.argmax(1)]
    assert lines[0]["true_label"] == "" and lines[1]["true_label"] == rows[1]["label"]
    assert float(lines[3]["predicted_valence"]) == pytest.approx(predictions.attributes[3, 1], rel=1e-5)

    # challenge submissions cover every row, unlabelled ones too
    task1 = read_csv(tmp_path / FILES["task1"])
    assert list(task1[0]) == ["FileName", "EmoClass"] and len(task1) == len(rows)
    assert task1[0] == {"FileName": "utt000.wav", "EmoClass": lines[0]["predicted_label"]}
    task2 = read_csv(tmp_path / FILES["task2"])
    assert list(task2[0]) == ["FileName", "EmoAct", "EmoVal", "EmoDom"] and len(task2) == len(rows)
    np.testing.assert_allclose([float(task2[5][c]) for c in ("EmoAct", "EmoVal", "EmoDom")], predictions.attributes[5], atol=1e-5)

    # figures are valid PNGs of the planned size
    assert png_size(tmp_path / FILES["confusion_png"]) == figure_pixels(confusion_matrix_size(4))
    assert png_size(tmp_path / FILES["scatter_png"]) == figure_pixels(scatter_size(3))


def test_unlabelled_split_still_gets_predictions_and_submission(tmp_path):
    rows, predictions = hand_made(n=20)
    config = SERConfig(task="categorical", labels=LABELS, label_names=NAMES)
    write_evaluation_report(tmp_path, Predictions(logits=predictions.logits), rows, config, n_resamples=0)
    assert (tmp_path / FILES["per_class"]).exists()  # an earlier, labelled report in the same folder
    for row in rows:
        row["label"] = None
        row["gender"] = None
    report = write_evaluation_report(tmp_path, Predictions(logits=predictions.logits), rows, config, n_resamples=RESAMPLES)
    assert "macro_f1" not in report and report["num_labelled"] == 0
    assert "no row has a class label: class metrics are not computed" in report["notes"]
    assert "no row has a gender: no per-gender breakdown" in report["notes"]
    files = set(os.listdir(tmp_path))
    assert {FILES["task1"], FILES["predictions"], FILES["metrics"], FILES["by_speaker"]} <= files
    assert not files & {FILES["per_class"], FILES["confusion_png"], FILES["by_gender"], FILES["task2"]}  # stale ones removed
    assert sorted(report["files"]) == sorted(files)
    assert len(read_csv(tmp_path / FILES["task1"])) == 20


def test_other_attributes_give_no_task2_submission_and_zero_resamples_no_intervals(tmp_path):
    rows, predictions = hand_made(n=30)
    config = SERConfig(task="attributes", attributes=["arousal", "valence"], attribute_range=(1, 7))
    rows = [{**row, "label": "not-a-class"} for row in rows]  # ignored: an attribute model has no classes
    report = write_evaluation_report(
        tmp_path, Predictions(attributes=predictions.attributes[:, :2]), rows, config, n_resamples=0
    )
    assert "confidence_intervals" not in report
    assert not (tmp_path / FILES["task2"]).exists() and not (tmp_path / FILES["task1"]).exists()
    assert any("no task-2 submission" in note for note in report["notes"])
    assert png_size(tmp_path / FILES["scatter_png"]) == figure_pixels(scatter_size(2))


def test_bad_inputs_are_rejected_with_the_row_named(tmp_path):
    rows, predictions = hand_made(n=10)
    config = SERConfig(task="categorical", labels=LABELS)
    with pytest.raises(ValueError, match="10 predictions for 9 rows"):
        compute_evaluation(Predictions(logits=predictions.logits), rows[:9], config)
    bad = [dict(row) for row in rows]
    bad[4]["label"] = "Z"
    with pytest.raises(ValueError, match=r"utt004.*'Z'"):
        compute_evaluation(Predictions(logits=predictions.logits), bad, config)
    with pytest.raises(ValueError, match="4 classes but the logits have shape"):
        compute_evaluation(Predictions(logits=predictions.logits[:, :3]), rows, config)
    logits = predictions.logits.copy()
    logits[6, 2] = np.nan
    with pytest.raises(ValueError, match="row 6 are not finite"):
        Predictions(logits=logits)
    assert not list(tmp_path.iterdir())


def test_display_names_fall_back_to_codes():
    config = SERConfig(task="categorical", labels=["x", "A"], label_names={"A": "angry"})
    assert display_names(config) == ["x", "angry (A)"]


def test_bar_chart_draws_failed_cells_and_checks_its_inputs(tmp_path):
    path = tmp_path / "chart.png"
    series = {"relu": [0.4, float("nan"), 0.5], "mish": [0.45, 0.5, 0.55]}
    bar_chart(path, ["ce", "focal", "weighted_ce"], series, errors={"relu": [0.01, 0.0, 0.02]}, title="t", ylabel="macro-F1")
    assert png_size(path) == figure_pixels(bar_chart_size(3, 2))
    with pytest.raises(ValueError, match="series 'mish' has 2 values for 3 categories"):
        bar_chart(tmp_path / "x.png", ["a", "b", "c"], {"mish": [0.1, 0.2]}, title="t", ylabel="y")
    with pytest.raises(ValueError, match="unknown series"):
        bar_chart(tmp_path / "x.png", ["a"], {"mish": [0.1]}, errors={"relu": [0.1]}, title="t", ylabel="y")
    with pytest.raises(ValueError, match=r"shape \(2, 2\), expected \(3, 3\)"):
        confusion_matrix_figure(np.eye(2), ["a", "b", "c"], tmp_path / "x.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chart.png"]


# ---------------------------------------------------------------------------------- end to end
SECONDS = 0.4
N_TEST = 16


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A manifest corpus of random-noise wavs (equal lengths, so batching adds no padding)."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    lines = ["id,audio,label,arousal,valence,dominance,speaker,gender,split"]
    for split, n in (("train", 4), ("test", N_TEST)):
        for i in range(n):
            uid = f"{split}{i:02d}"
            write_wav(root / "audio" / f"{uid}.wav", rng.uniform(-0.3, 0.3, int(SECONDS * 16000)).astype(np.float32))
            label = "" if (split == "test" and i == 3) else LABELS[i % 4]
            gender = "" if i == 5 else "MF"[i % 2]
            a, v, d = rng.uniform(1, 7, 3)
            lines.append(f"{uid},audio/{uid}.wav,{label},{a:.3f},{v:.3f},{d:.3f},spk{i % 3},{gender},{split}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


def save_tiny_model(folder, task):
    from ser_hf.configuration import SERSpeechConfig
    from ser_hf.modeling import SERModelForSpeech, build_feature_extractor
    from ser_hf.tiny import tiny_speech_backbone

    import torch

    torch.manual_seed(0)
    config = SERSpeechConfig(
        backbone_config=tiny_speech_backbone("wavlm", hidden_size=32, num_layers=1),
        task=task,
        labels=LABELS if task != "attributes" else None,
        label_names=NAMES,
        head_hidden_size=16,
        max_audio_seconds=1.0,
    )
    model = SERModelForSpeech(config).eval()
    model.save_pretrained(folder)
    build_feature_extractor(config).save_pretrained(folder)
    return model


@pytest.mark.parametrize("task", ["categorical", "attributes", "multitask"])
def test_ser_hf_evaluate_writes_the_report(task, corpus, tmp_path, capsys):
    import torch

    from ser_hf.commands.evaluate import main
    from ser_hf.data.corpora import load_corpus
    from ser_hf.experiment import build_collator

    model = save_tiny_model(tmp_path / "model", task)
    out = tmp_path / "eval"
    argv = ["--model", str(tmp_path / "model"), "--corpus", "manifest", "--data_path", str(corpus), "--split", "test",
            "--output_dir", str(out), "--batch_size", "5", "--bootstrap_resamples", str(RESAMPLES)]  # fmt: skip
    if task == "multitask":  # once through the console entry point in a fresh interpreter (nothing pre-imported)
        done = subprocess.run([sys.executable, "-m", "ser_hf.cli", "evaluate", *argv], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        printed = json.loads(done.stdout)
    else:
        assert main(argv) == 0
        printed = json.loads(capsys.readouterr().out)
    report = json.loads((out / FILES["metrics"]).read_text())
    assert report["num_examples"] == N_TEST and report["split"] == "test" and report["corpus"] == "manifest"
    assert sorted(report["files"]) == sorted(os.listdir(out))

    rows = load_corpus("manifest", corpus)["test"].to_list()
    lines = read_csv(out / FILES["predictions"])
    assert [line["id"] for line in lines] == [row["id"] for row in rows]  # the unlabelled row is predicted too

    # predictions are aligned with the rows: recompute three rows directly with the model
    collator = build_collator(model, _extractor(tmp_path / "model"), max_seconds=1.0)
    with torch.no_grad():
        direct = model(**{k: v for k, v in collator([rows[i] for i in (0, 7, 15)]).items() if k in ("input_values", "attention_mask")})
    if task != "attributes":
        probabilities = np.array([[float(lines[i][f"prob_{c}"]) for c in LABELS] for i in (0, 7, 15)])
        np.testing.assert_allclose(probabilities, torch.softmax(direct.logits, -1).numpy(), atol=1e-4)
        labelled = [line for line in lines if line["true_label"]]
        assert report["num_labelled"] == len(labelled) == N_TEST - 1
        truth = [line["true_label"] for line in labelled]
        predicted = [line["predicted_label"] for line in labelled]
        assert report["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro", labels=LABELS))
        assert report["uar"] == pytest.approx(balanced_accuracy_score(truth, predicted))
        assert printed["macro_f1"] == pytest.approx(report["macro_f1"])
        assert printed["macro_f1_ci95"] == [report["confidence_intervals"]["macro_f1"][k] for k in ("low", "high")]
        assert png_size(out / FILES["confusion_png"]) == figure_pixels(confusion_matrix_size(4))
        assert len(read_csv(out / FILES["per_class"])) == 4
        assert [line["EmoClass"] for line in read_csv(out / FILES["task1"])] == [line["predicted_label"] for line in lines]
    if task != "categorical":
        predicted_avd = np.array([[float(lines[i][f"predicted_{a}"]) for a in ATTRS] for i in (0, 7, 15)])
        np.testing.assert_allclose(predicted_avd, direct.attributes.numpy(), atol=1e-4)
        for a in ATTRS:
            true_values = [float(line[f"true_{a}"]) for line in lines]
            predicted_values = [float(line[f"predicted_{a}"]) for line in lines]
            assert report[f"ccc_{a}"] == pytest.approx(reference_ccc(predicted_values, true_values), abs=1e-5)
            interval = report["confidence_intervals"][f"ccc_{a}"]
            assert interval["low"] <= report[f"ccc_{a}"] <= interval["high"]
        assert png_size(out / FILES["scatter_png"]) == figure_pixels(scatter_size(3))
        assert printed["ccc_mean"] == pytest.approx(report["ccc_mean"])
        assert len(read_csv(out / FILES["task2"])) == N_TEST
    gender = report["by_gender"]
    assert gender["rows_without_value"] == 1 and sum(g["n"] for g in gender["groups"].values()) == N_TEST - 1
    assert set(report["by_speaker"]["groups"]) == {"spk0", "spk1", "spk2"}
    assert (out / FILES["by_gender"]).exists() and (out / FILES["by_speaker"]).exists()


def _extractor(folder):
    from transformers import AutoFeatureExtractor

    return AutoFeatureExtractor.from_pretrained(folder)


def test_evaluate_rejects_a_class_the_model_does_not_know_before_predicting(tmp_path):
    from ser_hf.arguments import DataArguments
    from ser_hf.experiment import evaluate_checkpoint

    save_tiny_model(tmp_path / "model", "categorical")
    audio = write_wav(tmp_path / "a.wav", np.zeros(3200, dtype=np.float32))
    (tmp_path / "m.csv").write_text(f"id,audio,label,split\nok,{audio},A,test\nodd,{audio},Q,test\n")
    with pytest.raises(ValueError, match=r"'odd'.*'Q'"):
        evaluate_checkpoint(str(tmp_path / "model"), DataArguments(corpus="manifest", data_path=str(tmp_path / "m.csv")))
