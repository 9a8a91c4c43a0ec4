"""ser_hf.metrics against sklearn and an independent CCC, plus the offline evaluate modules."""
import socket
import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_recall_fscore_support,
)

from ser_hf.metrics import (
    METRIC_DIR,
    bootstrap_ci,
    ccc,
    ccc_per_attribute,
    classification_metrics,
    load_metric,
)

SEEDS = [0, 1, 2, 3, 4]
ATTRS = ["arousal", "valence", "dominance"]


def reference_ccc(x, y):
    """Independent CCC from numpy's biased covariance matrix."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    cov = np.cov(x, y, bias=True)
    return 2 * cov[0, 1] / (cov[0, 0] + cov[1, 1] + (x.mean() - y.mean()) ** 2)


def noisy_regression(seed, n=60, d=3):
    rng = np.random.default_rng(seed)
    targets = rng.uniform(1, 7, size=(n, d))
    preds = 0.7 * targets + rng.normal(0.5, 1.0, size=(n, d))
    return preds, targets


def noisy_classes(seed, n=80, k=8):
    rng = np.random.default_rng(seed)
    refs = rng.integers(0, k, size=n)
    preds = np.where(rng.random(n) < 0.5, refs, rng.integers(0, k, size=n))
    return preds, refs


# ---------------------------------------------------------------- CCC


@pytest.mark.parametrize("seed", SEEDS)
def test_ccc_matches_independent_formula(seed):
    preds, targets = noisy_regression(seed)
    for column in range(3):
        assert ccc(preds[:, column], targets[:, column]) == pytest.approx(
            reference_ccc(preds[:, column], targets[:, column]), abs=1e-12
        )


@pytest.mark.parametrize("seed", SEEDS)
def test_ccc_per_attribute_matches_columns_and_mean(seed):
    preds, targets = noisy_regression(seed)
    result = ccc_per_attribute(preds, targets, ATTRS)
    assert list(result) == ["ccc_arousal", "ccc_valence", "ccc_dominance", "ccc_mean"]
    expected = [reference_ccc(preds[:, c], targets[:, c]) for c in range(3)]
    for name, value in zip(ATTRS, expected):
        assert result[f"ccc_{name}"] == pytest.approx(value, abs=1e-12)
    assert result["ccc_mean"] == pytest.approx(np.mean(expected), abs=1e-12)


def test_ccc_perfect_and_negative_and_biased():
    t = np.linspace(-1, 2, 25)
    assert ccc(t, t) == pytest.approx(1.0)
    assert ccc(-t, t) == pytest.approx(reference_ccc(-t, t))
    assert ccc(-t, t) < -0.5
    # perfectly correlated but shifted: Pearson is 1, CCC must penalise the offset
    shifted = ccc(t + 1.0, t)
    assert shifted == pytest.approx(reference_ccc(t + 1.0, t))
    assert 0 < shifted < 1


def test_ccc_constant_cases():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    assert ccc(np.full(4, 2.5), t) == 0.0  # constant prediction: no covariance
    assert ccc(np.full(4, 3.0), np.full(4, 5.0)) == 0.0  # two different constants
    assert ccc(np.full(4, 0.1), np.full(4, 0.1)) == 1.0  # exact (constant) agreement


def test_ccc_nan_targets_excluded_per_attribute():
    preds, targets = noisy_regression(7, n=40)
    targets[[3, 10, 11], 1] = np.nan
    targets[0, 2] = np.nan
    result = ccc_per_attribute(preds, targets, ATTRS)
    assert result["ccc_arousal"] == pytest.approx(reference_ccc(preds[:, 0], targets[:, 0]))
    keep = ~np.isnan(targets[:, 1])
    assert keep.sum() == 37
    assert result["ccc_valence"] == pytest.approx(reference_ccc(preds[keep, 1], targets[keep, 1]))
    keep = ~np.isnan(targets[:, 2])
    assert result["ccc_dominance"] == pytest.approx(reference_ccc(preds[keep, 2], targets[keep, 2]))
    assert np.isfinite(result["ccc_mean"])


def test_ccc_bad_input_errors():
    preds, targets = noisy_regression(0, n=5)
    with pytest.raises(ValueError, match="differ in length"):
        ccc(preds[:4, 0], targets[:, 0])
    with pytest.raises(ValueError, match="row 2 is not finite"):
        ccc(np.array([1.0, 2.0, np.nan]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="empty"):
        ccc([], [])
    bad = preds.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="'valence' in row 4"):
        ccc_per_attribute(bad, targets, ATTRS)
    all_missing = targets.copy()
    all_missing[:, 2] = np.nan
    with pytest.raises(ValueError, match="no row has an annotated 'dominance'"):
        ccc_per_attribute(preds, all_missing, ATTRS)
    with pytest.raises(ValueError, match="2 attribute names"):
        ccc_per_attribute(preds, targets, ["a", "b"])
    with pytest.raises(ValueError, match="shape"):
        ccc_per_attribute(preds[:, :2], targets, ["a", "b"])
    with pytest.raises(ValueError, match="N x D"):
        ccc_per_attribute(preds[:, 0], targets[:, 0], ["a"])


# ---------------------------------------------------------------- classification


def sklearn_scores(preds, refs, labels=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        return {
            "macro_f1": f1_score(refs, preds, average="macro", labels=labels, zero_division=0),
            "micro_f1": f1_score(refs, preds, average="micro", labels=labels, zero_division=0),
            "accuracy": accuracy_score(refs, preds),
            "uar": balanced_accuracy_score(refs, preds),
        }


@pytest.mark.parametrize("seed", SEEDS)
def test_classification_matches_sklearn(seed):
    preds, refs = noisy_classes(seed)
    result = classification_metrics(preds, refs, num_classes=8, per_class=True)
    for key, value in sklearn_scores(preds, refs).items():
        assert result[key] == pytest.approx(value, abs=1e-12), key
    labels = np.union1d(preds, refs)
    precision, recall, f1, support = precision_recall_fscore_support(refs, preds, labels=labels, zero_division=0)
    assert sorted(result["per_class"]) == labels.tolist()
    for k, c in enumerate(labels):
        row = result["per_class"][int(c)]
        assert row["precision"] == pytest.approx(precision[k])
        assert row["recall"] == pytest.approx(recall[k])
        assert row["f1"] == pytest.approx(f1[k])
        assert row["support"] == support[k]


def test_class_never_predicted_and_never_true():
    refs = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    preds = np.array([0, 0, 1, 2, 2, 2, 1, 4])  # 3 never predicted, 4 never true
    result = classification_metrics(preds, refs, per_class=True)
    assert result["per_class"][3] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert result["per_class"][4] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    for key, value in sklearn_scores(preds, refs).items():
        assert result[key] == pytest.approx(value), key
    # UAR averages over the 4 true classes only: recalls 1, .5, 1, 0
    assert result["uar"] == pytest.approx(0.625)
    # macro-F1 counts the spurious class 4 (sklearn's default): f1s 1, .5, .8, 0, 0
    assert result["macro_f1"] == pytest.approx(2.3 / 5)


def test_explicit_labels_match_sklearn():
    preds, refs = noisy_classes(11, k=5)
    for labels in ([0, 1, 2, 3, 4, 5, 6, 7], [1, 3]):
        result = classification_metrics(preds, refs, labels=labels)
        expected = sklearn_scores(preds, refs, labels=labels)
        assert result["macro_f1"] == pytest.approx(expected["macro_f1"])
        assert result["micro_f1"] == pytest.approx(expected["micro_f1"])
        assert result["accuracy"] == pytest.approx(expected["accuracy"])
    # absent classes 5..7 score 0 when the caller insists on them
    full = classification_metrics(preds, refs, labels=range(8))["macro_f1"]
    present = classification_metrics(preds, refs)["macro_f1"]
    assert full == pytest.approx(present * 5 / 8)


def test_classification_perfect_and_constant():
    refs = np.array([0, 1, 2, 3, 0, 1])
    assert classification_metrics(refs, refs) == {"macro_f1": 1.0, "micro_f1": 1.0, "accuracy": 1.0, "uar": 1.0}
    constant = np.zeros_like(refs)
    result = classification_metrics(constant, refs)
    for key, value in sklearn_scores(constant, refs).items():
        assert result[key] == pytest.approx(value), key
    assert result["uar"] == pytest.approx(0.25)


def test_classification_bad_input_errors():
    with pytest.raises(ValueError, match="integer class ids.*argmax"):
        classification_metrics(np.array([0.2, 1.0]), [0, 1])
    with pytest.raises(ValueError, match="references row 1 has negative class id -100"):
        classification_metrics([0, 1], [0, -100])
    with pytest.raises(ValueError, match="predictions row 0 has class id 8 >= num_classes=8"):
        classification_metrics([8, 1], [0, 1], num_classes=8)
    with pytest.raises(ValueError, match="differ in length"):
        classification_metrics([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="duplicates"):
        classification_metrics([0, 1], [0, 1], labels=[0, 0, 1])
    with pytest.raises(ValueError, match="none of the classes"):
        classification_metrics([0, 1], [0, 1], labels=[5])


# ---------------------------------------------------------------- bootstrap


def macro_f1(p, r):
    return classification_metrics(p, r)["macro_f1"]


def test_bootstrap_ci_contains_estimate_and_narrows():
    preds, targets = noisy_regression(3, n=400)
    p, t = preds[:, 0], targets[:, 0]
    small = bootstrap_ci(ccc, p[:50], t[:50], n_resamples=300)
    large = bootstrap_ci(ccc, p, t, n_resamples=300)
    assert small[0] <= ccc(p[:50], t[:50]) <= small[1]
    assert large[0] <= ccc(p, t) <= large[1]
    assert large[1] - large[0] < 0.7 * (small[1] - small[0])

    cpreds, crefs = noisy_classes(3, n=400, k=4)
    low, high = bootstrap_ci(macro_f1, cpreds, crefs, n_resamples=200)
    assert low < macro_f1(cpreds, crefs) < high
    assert bootstrap_ci(macro_f1, cpreds, crefs, n_resamples=200) == (low, high)  # seeded


def test_bootstrap_ci_errors():
    with pytest.raises(ValueError, match="finite number"):
        bootstrap_ci(lambda p, r: float("nan"), [1.0, 2.0], [1.0, 2.0], n_resamples=3)
    with pytest.raises(ValueError, match="finite number"):
        bootstrap_ci(lambda p, r: {"x": 1.0}, [1.0, 2.0], [1.0, 2.0], n_resamples=3)
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(ccc, [1.0, 2.0], [1.0, 2.0], alpha=1.5)
    with pytest.raises(ValueError, match="differ in length"):
        bootstrap_ci(ccc, [1.0, 2.0], [1.0], n_resamples=3)


# ---------------------------------------------------------------- evaluate modules


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: loading must be purely local."""

    def refuse(*args, **kwargs):
        raise AssertionError("metric loading tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_load_metric_offline_matches_functional(no_network):
    preds, targets = noisy_regression(5, n=30)
    targets[2, 0] = np.nan
    expected = ccc_per_attribute(preds, targets, ATTRS)
    for name in ("ser_ccc", "ccc", "ser_ccc"):  # aliases and a repeated load
        result = load_metric(name).compute(predictions=preds.tolist(), references=targets.tolist())
        assert result == pytest.approx(expected, abs=1e-12)
    named = load_metric("ccc").compute(predictions=preds[:, :2], references=targets[:, :2], attribute_names=["a", "v"])
    assert named == pytest.approx(ccc_per_attribute(preds[:, :2], targets[:, :2], ["a", "v"]), abs=1e-12)

    cpreds, crefs = noisy_classes(5)
    expected = classification_metrics(cpreds, crefs)
    for name in ("ser_classification", "classification", "ser_classification"):
        result = load_metric(name).compute(predictions=cpreds.tolist(), references=crefs.tolist())
        assert result == pytest.approx(expected, abs=1e-12)
    result = load_metric("classification").compute(predictions=cpreds, references=crefs, labels=[0, 1, 2])
    assert result == pytest.approx(classification_metrics(cpreds, crefs, labels=[0, 1, 2]), abs=1e-12)


def test_evaluate_load_by_path_and_batches(no_network):
    import evaluate

    metric = evaluate.load(str(METRIC_DIR / "ser_classification"))
    cpreds, crefs = noisy_classes(9)
    for start in range(0, len(cpreds), 16):
        metric.add_batch(predictions=cpreds[start : start + 16], references=crefs[start : start + 16])
    assert metric.compute() == pytest.approx(classification_metrics(cpreds, crefs), abs=1e-12)

    metric = evaluate.load(str(METRIC_DIR / "ser_ccc" / "ser_ccc.py"))
    preds = [[1.0, 2.0, 3.0], [2.0, 1.0, 3.5], [3.0, 2.5, 1.0]]
    refs = [[1.0, None, 3.0], [2.5, 1.0, 3.0], [3.0, 2.0, 1.5]]  # None = not annotated
    expected = ccc_per_attribute(preds, np.array(refs, dtype=float), ATTRS)
    assert metric.compute(predictions=preds, references=refs) == pytest.approx(expected, abs=1e-12)


def test_load_metric_unknown_name():
    with pytest.raises(ValueError, match="unknown metric 'f1'.*ser_ccc"):
        load_metric("f1")
