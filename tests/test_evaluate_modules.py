"""The evaluate modules are the metric path: self-contained (no ser_hf import, metric cards),
equal to the old hand-written numpy numbers and to `functional`, and `evaluate.evaluator
("audio-classification")` runs on a ser-hf checkpoint."""
from __future__ import annotations

import ast
import os

import numpy as np
import pytest

from ser_hf.metrics import METRIC_DIR, compute_metric, load_metric
from ser_hf.metrics.functional import bootstrap_ci, ccc_per_attribute, classification_metrics


# The pre-scikit-learn implementation (round 1), kept verbatim as the reference for "the old numbers".
def _old_classification(p, r, labels=None):
    p, r = np.asarray(p), np.asarray(r)
    classes = np.union1d(p, r) if labels is None else np.asarray(labels)

    def divide(n, d):
        out = np.zeros(np.shape(n), dtype=np.float64)
        np.divide(n, d, out=out, where=np.asarray(d) != 0)
        return out

    hits = p == r
    tp = np.array([np.sum(hits & (r == c)) for c in classes], dtype=np.float64)
    predicted = np.array([np.sum(p == c) for c in classes], dtype=np.float64)
    support = np.array([np.sum(r == c) for c in classes], dtype=np.float64)
    f1 = divide(2.0 * tp, predicted + support)
    micro = divide(np.array(2.0 * tp.sum()), np.array(predicted.sum() + support.sum()))
    recall = divide(tp, support)
    return {"macro_f1": float(f1.mean()), "micro_f1": float(micro), "accuracy": float(hits.mean()),
            "uar": float(recall[support > 0].mean())}


def _old_bootstrap(metric_fn, p, r, n_resamples=1000, alpha=0.05, seed=0):
    rng = np.random.default_rng(seed)
    scores = [metric_fn(p[rows], r[rows]) for rows in (rng.integers(0, len(p), size=len(p)) for _ in range(n_resamples))]
    low, high = np.quantile(scores, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


@pytest.mark.parametrize("seed", range(5))
def test_sklearn_numbers_equal_the_old_ones(seed):
    rng = np.random.default_rng(seed)
    k = 5
    refs = rng.integers(0, k - 1, size=60)  # class 4 never occurs in the references
    preds = np.where(rng.random(60) < 0.5, refs, rng.integers(0, k, size=60))
    for labels in (None, list(range(k))):
        old = _old_classification(preds, refs, labels)
        assert classification_metrics(preds, refs, labels=labels) == pytest.approx(old, abs=1e-12)
        module = compute_metric("ser_classification", predictions=preds, references=refs, labels=labels)
        assert module == pytest.approx(old, abs=1e-12)
    fn = lambda a, b: classification_metrics(a, b, labels=list(range(k)))["macro_f1"]  # noqa: E731
    assert bootstrap_ci(fn, preds, refs, n_resamples=300, seed=seed) == pytest.approx(
        _old_bootstrap(fn, preds, refs, n_resamples=300, seed=seed), abs=1e-12)  # scipy.stats.bootstrap, same draws


def test_ccc_module_equals_functional_with_missing_ratings():
    rng = np.random.default_rng(1)
    preds = rng.normal(4, 1, size=(50, 3))
    refs = preds + rng.normal(0, 1, size=(50, 3))
    refs[::7, 1] = np.nan
    names = ["arousal", "valence", "dominance"]
    module = compute_metric("ser_ccc", predictions=preds, references=refs, attribute_names=names)
    assert module == pytest.approx(ccc_per_attribute(preds, refs, names), abs=1e-12)
    per_class = compute_metric("ser_classification", predictions=[0, 1, 1, 2], references=[0, 1, 2, 2], per_class=True)
    assert per_class["per_class"][2] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}


@pytest.mark.parametrize("name", ["ser_classification", "ser_ccc"])
def test_modules_are_self_contained_with_metric_cards(name):
    folder = METRIC_DIR / name
    tree = ast.parse((folder / f"{name}.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert "ser_hf" not in imported and imported <= {"datasets", "evaluate", "numpy", "sklearn"}
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "app_file: app.py" in card and "## How to Use" in card
    assert (folder / "app.py").exists() and (folder / "requirements.txt").exists()
    metric = load_metric(name)  # evaluate.load on the local path: offline
    assert metric.name == name


def test_trainer_metrics_go_through_the_evaluate_modules(monkeypatch):
    """compute_ser_metrics calls the modules: break them and the trainer's metrics break."""
    import ser_hf.metrics
    from transformers import EvalPrediction

    from ser_hf.configuration import SERSpeechConfig
    from ser_hf.tiny import tiny_speech_backbone
    from ser_hf.trainer import compute_ser_metrics

    config = SERSpeechConfig(backbone_config=tiny_speech_backbone(), labels=["a", "b"])
    prediction = EvalPrediction(predictions=np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), label_ids=np.array([0, 1, 1]))
    assert compute_ser_metrics(config, prediction)["accuracy"] == pytest.approx(2 / 3)
    calls = []
    real = ser_hf.metrics.compute_metric
    monkeypatch.setattr(ser_hf.metrics, "compute_metric", lambda name, **kw: calls.append(name) or real(name, **kw))
    compute_ser_metrics(config, prediction)
    assert calls == ["ser_classification"]


def test_evaluate_evaluator_with_a_ser_hf_checkpoint(tmp_path):
    import evaluate
    import soundfile as sf
    import torch
    from datasets import Dataset
    from transformers import pipeline

    import ser_hf  # noqa: F401  (pipeline without FFmpeg)
    from ser_hf.configuration import SERSpeechConfig
    from ser_hf.modeling import SERModelForSpeech, build_feature_extractor
    from ser_hf.tiny import tiny_speech_backbone

    torch.manual_seed(0)
    model = SERModelForSpeech(SERSpeechConfig(backbone_config=tiny_speech_backbone(), labels=["a", "b"], head_hidden_size=8))
    model.save_pretrained(tmp_path / "model")
    build_feature_extractor(model.config).save_pretrained(tmp_path / "model")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        path = str(tmp_path / f"{i}.wav")
        sf.write(path, (0.1 * rng.standard_normal(8000 + 2000 * i)).astype(np.float32), 22050)
        paths.append(path)
    data = Dataset.from_dict({"audio": paths, "label": [0, 1, 0, 1, 0, 1]})
    classifier = pipeline("audio-classification", model=str(tmp_path / "model"))
    task_evaluator = evaluate.evaluator("audio-classification")
    # A model path, not the Pipeline object: evaluate 0.4.6 checks `transformers.TFPreTrainedModel`, gone in
    # transformers 5, for anything that is not a str or PreTrainedModel. From a path it builds the pipeline
    # itself, which is ser-hf's (no FFmpeg) once ser_hf is imported.
    results = task_evaluator.compute(
        model_or_pipeline=str(tmp_path / "model"), data=data, metric=load_metric("ser_classification"),
        input_column="audio", label_column="label", label_mapping=model.config.label2id,
    )
    predicted = [model.config.label2id[max(classifier(p), key=lambda r: r["score"])["label"]] for p in paths]
    expected = compute_metric("ser_classification", predictions=predicted, references=[0, 1, 0, 1, 0, 1])
    assert {k: results[k] for k in expected} == pytest.approx(expected)
