"""Every loss in ser_hf.losses against an independent numpy computation, plus edge cases."""
import math

import numpy as np
import pytest
import torch

from ser_hf.losses import (
    ATTRIBUTE_LOSSES,
    CATEGORICAL_LOSSES,
    CCCLoss,
    CrossEntropyLoss,
    FocalLoss,
    LossName,
    MSELoss,
    MultiTaskLoss,
    SoftTargetCrossEntropyLoss,
    build_loss,
    class_counts,
    class_weights,
    concordance_correlation,
)

TOL = dict(rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- numpy references (independent)
def np_log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def np_ce(logits, targets, weight=None, smoothing=0.0, ignore=-100):
    logp = np_log_softmax(logits)
    k = logp.shape[1]
    w = np.ones(k) if weight is None else np.asarray(weight, dtype=np.float64)
    num = den = 0.0
    for row, y in enumerate(targets):
        if y == ignore:
            continue
        num += (1 - smoothing) * w[y] * -logp[row, y] + smoothing / k * np.sum(w * -logp[row])
        den += w[y]
    return num / den


def np_focal(logits, targets, gamma, alpha=None, ignore=-100):
    logp = np_log_softmax(logits)
    terms = []
    for row, y in enumerate(targets):
        if y == ignore:
            continue
        p = math.exp(logp[row, y])
        a = 1.0 if alpha is None else alpha[y]
        terms.append(-a * (1 - p) ** gamma * logp[row, y])
    return float(np.mean(terms))


def np_soft_ce(logits, dist, weight=None):
    logp = np_log_softmax(logits)
    w = np.ones(logp.shape[1]) if weight is None else np.asarray(weight, dtype=np.float64)
    return float(-(dist * w * logp).sum() / (dist * w).sum())


def np_ccc_per_attribute(preds, targets):
    """Population CCC per column over rows whose target is not NaN (NaN when a column has no row)."""
    out = []
    for d in range(preds.shape[1]):
        ok = ~np.isnan(targets[:, d])
        if not ok.any():
            out.append(np.nan)
            continue
        p, t = preds[ok, d], targets[ok, d]
        cov = np.mean((p - p.mean()) * (t - t.mean()))
        out.append(2 * cov / (np.var(p) + np.var(t) + (p.mean() - t.mean()) ** 2))
    return np.array(out)


def np_mse_per_attribute(preds, targets):
    return np.array(
        [np.mean((preds[~np.isnan(targets[:, d]), d] - targets[~np.isnan(targets[:, d]), d]) ** 2)
         if (~np.isnan(targets[:, d])).any() else np.nan
         for d in range(preds.shape[1])]
    )


def rng_logits(b, k, seed=0, scale=2.0):
    return np.random.default_rng(seed).normal(scale=scale, size=(b, k))


def t64(x, grad=False):
    return torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=grad)


def assert_vec(actual, expected):
    np.testing.assert_allclose(actual.double().numpy(), np.asarray(expected, dtype=np.float64), rtol=1e-6)


def assert_finite_grad(tensor):
    assert tensor.grad is not None
    assert torch.isfinite(tensor.grad).all(), tensor.grad


# ---------------------------------------------------------------- class weights
COUNTS = [10, 30, 60]


def test_class_weights_hand_numbers():
    none = class_weights(COUNTS, "none", dtype=torch.float64)
    inverse = class_weights(COUNTS, "inverse", dtype=torch.float64)
    sqrt_inv = class_weights(COUNTS, "sqrt_inverse", dtype=torch.float64)
    effective = class_weights(COUNTS, "effective_number", beta=0.9, dtype=torch.float64)
    np.testing.assert_allclose(none.numpy(), [1, 1, 1])
    np.testing.assert_allclose(inverse.numpy(), [10 / 3, 10 / 9, 5 / 9], **TOL)
    np.testing.assert_allclose(sqrt_inv.numpy(), [1.9299279630882287, 1.1142444290055749, 0.7878897916491746], rtol=1e-12)
    np.testing.assert_allclose(effective.numpy(), [1.437726288643157, 0.9778753998779658, 0.9381079186204908], rtol=1e-12)
    for w in (inverse, sqrt_inv, effective):  # mean weight per training sample is 1
        assert float((w * torch.tensor(COUNTS, dtype=torch.float64)).sum()) == pytest.approx(100.0, rel=1e-12)
    assert class_weights(COUNTS, "inverse").dtype == torch.float32


def test_effective_number_limits():
    # beta -> 1 approaches inverse frequency; beta = 0 gives equal weights.
    near_inverse = class_weights(COUNTS, "effective_number", beta=0.999999, dtype=torch.float64)
    np.testing.assert_allclose(near_inverse.numpy(), [10 / 3, 10 / 9, 5 / 9], rtol=1e-3)
    np.testing.assert_allclose(class_weights(COUNTS, "effective_number", beta=0.0).numpy(), [1, 1, 1], rtol=1e-6)
    with pytest.raises(ValueError, match="beta"):
        class_weights(COUNTS, "effective_number", beta=1.0)


def test_class_weights_accepts_tensor_counts():
    w = class_weights(torch.tensor([5, 5]), "inverse")
    np.testing.assert_allclose(w.numpy(), [1.0, 1.0])


@pytest.mark.parametrize("scheme", ["none", "inverse", "sqrt_inverse", "effective_number"])
def test_zero_count_names_the_class(scheme):
    with pytest.raises(ValueError, match="class 1 .*count 0"):
        class_weights([4, 0, 3], scheme)
    with pytest.raises(ValueError, match="class 2 \\('S'\\)"):
        class_weights([4, 1, 0], scheme, label_names=["A", "H", "S"])


def test_class_weights_bad_scheme_lists_valid():
    with pytest.raises(ValueError, match="sqrt_inverse"):
        class_weights(COUNTS, "balanced")


def test_class_counts():
    counts = class_counts([2, 0, 2, -100, 2], num_classes=4, ignore_index=-100)
    assert counts.tolist() == [1, 0, 3, 0]
    with pytest.raises(ValueError, match="row 3"):
        class_counts([0, 1, 2, 5], num_classes=3)
    with pytest.raises(ValueError, match="row 1"):
        class_counts([0, -100], num_classes=3)  # -100 only skipped when ignore_index is given


# ---------------------------------------------------------------- cross-entropy
def test_ce_matches_numpy_weighted_smoothed_ignored():
    logits = rng_logits(7, 4, seed=1)
    # class 3 is absent from the batch; rows 2 and 5 are ignored
    targets = [0, 2, -100, 1, 1, -100, 0]
    weight = [0.5, 2.0, 1.5, 3.0]
    for w in (None, weight):
        for eps in (0.0, 0.1):
            x = t64(logits, grad=True)
            loss = CrossEntropyLoss(weight=None if w is None else t64(w), label_smoothing=eps)(x, torch.tensor(targets))
            assert loss.item() == pytest.approx(np_ce(logits, targets, w, eps), rel=1e-12)
            loss.backward()
            assert_finite_grad(x)
            assert torch.all(x.grad[[2, 5]] == 0)  # ignored rows get no gradient
    # same reduction as torch's own mean reduction when some row is kept
    ref = torch.nn.functional.cross_entropy(t64(logits), torch.tensor(targets), weight=t64(weight), label_smoothing=0.1)
    ours = CrossEntropyLoss(weight=t64(weight), label_smoothing=0.1)(t64(logits), torch.tensor(targets))
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)


def test_ce_batch_of_one_and_all_ignored():
    logits = rng_logits(1, 3, seed=2)
    loss = CrossEntropyLoss(weight=[1.0, 4.0, 2.0])(t64(logits), torch.tensor([1]))
    assert loss.item() == pytest.approx(-np_log_softmax(logits)[0, 1], rel=1e-12)  # weight cancels for one row
    x = t64(rng_logits(3, 3), grad=True)
    loss = CrossEntropyLoss()(x, torch.tensor([-100, -100, -100]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(x.grad == 0)


def test_ce_rejects_bad_targets():
    with pytest.raises(ValueError, match="target 3 at row 1"):
        CrossEntropyLoss()(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="integer"):
        CrossEntropyLoss()(torch.zeros(2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="2 classes|3 entries"):
        CrossEntropyLoss(weight=[1.0, 1.0, 1.0])(torch.zeros(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="weight\\[1\\]"):
        CrossEntropyLoss(weight=[1.0, -1.0])


def test_half_precision_logits_are_computed_in_float32():
    logits = torch.tensor(rng_logits(4, 3, seed=3), dtype=torch.bfloat16)
    loss = CrossEntropyLoss()(logits, torch.tensor([0, 1, 2, 0]))
    assert loss.dtype == torch.float32
    expected = np_ce(logits.double().numpy(), [0, 1, 2, 0])
    assert loss.item() == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- focal
def test_focal_gamma0_equals_ce():
    logits = rng_logits(6, 5, seed=4)
    targets = torch.tensor([0, 4, 4, -100, 1, 2])
    focal = FocalLoss(gamma=0.0)(t64(logits), targets)
    ce = CrossEntropyLoss()(t64(logits), targets)
    assert focal.item() == pytest.approx(ce.item(), rel=1e-12)
    assert focal.item() == pytest.approx(np_ce(logits, targets.tolist()), rel=1e-12)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 3.0])
def test_focal_matches_numpy_with_alpha(gamma):
    logits = rng_logits(8, 3, seed=5)
    targets = [0, 1, 1, 1, -100, 1, 0, 1]  # class 2 absent, one ignored row
    alpha = [0.25, 0.5, 4.0]
    x = t64(logits, grad=True)
    loss = FocalLoss(gamma=gamma, alpha=t64(alpha))(x, torch.tensor(targets))
    assert loss.item() == pytest.approx(np_focal(logits, targets, gamma, alpha), rel=1e-10)
    assert loss.item() < np_focal(logits, targets, 0.0, alpha)  # down-weighting never increases the loss
    loss.backward()
    assert_finite_grad(x)


def test_focal_stable_for_extreme_logits_and_all_ignored():
    for gamma in (0.5, 2.0):
        x = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], requires_grad=True)
        loss = FocalLoss(gamma=gamma)(x, torch.tensor([0, 0]))  # row 0 certain & right, row 1 certain & wrong
        assert torch.isfinite(loss)
        assert loss.item() == pytest.approx(2e4 / 2, rel=1e-6)
        loss.backward()
        assert_finite_grad(x)
    x = t64(rng_logits(2, 3), grad=True)
    loss = FocalLoss()(x, torch.tensor([-100, -100]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(x.grad == 0)
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1.0)


# ---------------------------------------------------------------- soft-target CE
def test_soft_ce_matches_numpy():
    logits = rng_logits(5, 4, seed=6)
    votes = np.random.default_rng(7).integers(0, 4, size=(5, 4)).astype(np.float64) + 0.0
    votes[:, 0] += 1  # no empty row
    dist = votes / votes.sum(axis=1, keepdims=True)
    weight = [1.0, 2.0, 0.5, 3.0]
    for w in (None, weight):
        x = t64(logits, grad=True)
        loss = SoftTargetCrossEntropyLoss(weight=None if w is None else t64(w))(x, t64(dist))
        assert loss.item() == pytest.approx(np_soft_ce(logits, dist, w), rel=1e-12)
        loss.backward()
        assert_finite_grad(x)


def test_soft_ce_one_hot_equals_weighted_ce():
    logits = rng_logits(6, 3, seed=8)
    targets = torch.tensor([0, 1, 1, 2, 0, 0])
    weight = t64([2.0, 1.0, 0.5])
    soft = SoftTargetCrossEntropyLoss(weight=weight)(t64(logits), torch.nn.functional.one_hot(targets, 3).double())
    hard = CrossEntropyLoss(weight=weight)(t64(logits), targets)
    assert soft.item() == pytest.approx(hard.item(), rel=1e-12)


def test_soft_ce_rejects_non_distribution_rows():
    logits = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="row 1"):
        SoftTargetCrossEntropyLoss()(logits, torch.tensor([[0.5, 0.5], [0.9, 0.9], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="row 2"):
        SoftTargetCrossEntropyLoss()(logits, torch.tensor([[0.5, 0.5], [0.0, 1.0], [float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="shape"):
        SoftTargetCrossEntropyLoss()(logits, torch.tensor([0, 1, 1]))


# ---------------------------------------------------------------- CCC
def attribute_batch(seed=9, b=12, d=3):
    rng = np.random.default_rng(seed)
    targets = rng.uniform(1, 7, size=(b, d))
    preds = targets * 0.6 + rng.normal(scale=0.8, size=(b, d)) + 0.3
    return preds, targets


def test_ccc_matches_numpy_with_nan_targets_and_weights():
    preds, targets = attribute_batch()
    targets[[0, 3, 4], 1] = np.nan
    targets[7, 2] = np.nan
    expected_ccc = np_ccc_per_attribute(preds, targets)
    got = concordance_correlation(t64(preds), t64(targets), eps=0.0)
    np.testing.assert_allclose(got.numpy(), expected_ccc, **TOL)
    x = t64(preds, grad=True)
    loss = CCCLoss(weights=[1.0, 2.0, 1.0], eps=1e-300)(x, t64(targets))
    assert loss.item() == pytest.approx(float(np.dot([0.25, 0.5, 0.25], 1 - expected_ccc)), rel=1e-10)
    loss.backward()
    assert_finite_grad(x)
    assert torch.all(x.grad[[0, 3, 4], 1] == 0)  # masked entries get no gradient
    default = CCCLoss(eps=1e-300)(t64(preds), t64(targets))
    assert default.item() == pytest.approx(float(np.mean(1 - expected_ccc)), rel=1e-10)


def test_ccc_explicit_mask_and_perfect_prediction():
    preds, targets = attribute_batch(seed=10)
    mask = np.ones_like(targets, dtype=bool)
    mask[:4, 0] = False
    masked_targets = targets.copy()
    masked_targets[~mask] = np.nan
    got = concordance_correlation(t64(preds), t64(targets), mask=torch.tensor(mask), eps=0.0)
    np.testing.assert_allclose(got.numpy(), np_ccc_per_attribute(preds, masked_targets), **TOL)
    assert CCCLoss()(t64(targets), t64(targets)).item() == pytest.approx(0.0, abs=1e-8)
    mirrored = 2 * targets.mean(axis=0) - targets  # same mean and variance, correlation -1
    assert CCCLoss()(t64(mirrored), t64(targets)).item() == pytest.approx(2.0, abs=1e-8)


def test_ccc_batch_of_one_and_constant_predictions_are_finite():
    x = t64([[0.2, 0.7]], grad=True)
    loss = CCCLoss()(x, t64([[0.1, 0.7]]))
    assert loss.item() == pytest.approx(1.0)  # CCC of a single row is 0, not NaN
    loss.backward()
    assert_finite_grad(x)

    _, targets = attribute_batch(seed=11)
    x = torch.full(targets.shape, 4.0, dtype=torch.float64, requires_grad=True)
    ccc = concordance_correlation(x, t64(targets))
    assert torch.all(ccc == 0)
    loss = CCCLoss()(x, t64(targets))
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert_finite_grad(x)
    assert x.grad.abs().sum() > 0  # constant predictions still get a learning signal

    # constant predictions equal to constant targets: 0/eps, still finite
    const = torch.ones(5, 1, requires_grad=True)
    loss = CCCLoss()(const, torch.ones(5, 1))
    assert torch.isfinite(loss)
    loss.backward()
    assert_finite_grad(const)


def test_ccc_attribute_without_valid_rows_contributes_zero():
    preds, targets = attribute_batch(seed=12, d=2)
    targets[:, 1] = np.nan
    ccc = concordance_correlation(t64(preds), t64(targets))
    assert math.isnan(float(ccc[1]))
    x = t64(preds, grad=True)
    loss = CCCLoss(eps=1e-300)(x, t64(targets))
    assert loss.item() == pytest.approx(0.5 * (1 - np_ccc_per_attribute(preds, targets)[0]), rel=1e-10)
    loss.backward()
    assert_finite_grad(x)
    assert torch.all(x.grad[:, 1] == 0)
    # a batch where nothing is annotated is a graph-connected 0
    x = t64(preds, grad=True)
    loss = CCCLoss()(x, torch.full(preds.shape, float("nan"), dtype=torch.float64))
    assert loss.item() == 0.0
    loss.backward()
    assert_finite_grad(x)


def test_ccc_validates_inputs():
    with pytest.raises(ValueError, match="2 attribute weights"):
        CCCLoss(weights=[1.0, 1.0])(torch.zeros(4, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="shape"):
        CCCLoss()(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="all be zero"):
        CCCLoss(weights=[0.0, 0.0])
    # 1-D input is one attribute
    preds, targets = attribute_batch(seed=13, d=1)
    one_d = CCCLoss(eps=1e-300)(t64(preds[:, 0]), t64(targets[:, 0]))
    assert one_d.item() == pytest.approx(1 - np_ccc_per_attribute(preds, targets)[0], rel=1e-10)


# ---------------------------------------------------------------- MSE
def test_mse_matches_numpy_with_nan_targets():
    preds, targets = attribute_batch(seed=14)
    targets[[1, 2], 0] = np.nan
    x = t64(preds, grad=True)
    loss = MSELoss(weights=[2.0, 1.0, 1.0])(x, t64(targets))
    assert loss.item() == pytest.approx(float(np.dot([0.5, 0.25, 0.25], np_mse_per_attribute(preds, targets))), rel=1e-12)
    loss.backward()
    assert_finite_grad(x)
    assert torch.all(x.grad[[1, 2], 0] == 0)
    targets[:, 2] = np.nan  # no valid row: contributes 0
    per = np_mse_per_attribute(preds, targets)
    assert MSELoss()(t64(preds), t64(targets)).item() == pytest.approx((per[0] + per[1]) / 3, rel=1e-12)


# ---------------------------------------------------------------- multi-task
def test_multitask_weighted_sum_and_components():
    logits, labels = t64(rng_logits(6, 4, seed=15), grad=True), torch.tensor([0, 1, 2, 3, 0, -100])
    preds, targets = attribute_batch(seed=16, b=6)
    preds_t = t64(preds, grad=True)
    mtl = MultiTaskLoss({"category": FocalLoss(gamma=2.0), "attributes": CCCLoss()}, {"category": 1.0, "attributes": 0.5})
    total, parts = mtl(category=(logits, labels), attributes=(preds_t, t64(targets)))
    cat = FocalLoss(gamma=2.0)(logits, labels)
    att = CCCLoss()(preds_t, t64(targets))
    assert parts["category"].item() == pytest.approx(cat.item(), rel=1e-12)
    assert parts["attributes"].item() == pytest.approx(att.item(), rel=1e-12)
    assert total.item() == pytest.approx(cat.item() + 0.5 * att.item(), rel=1e-12)
    total.backward()
    assert_finite_grad(logits)
    assert_finite_grad(preds_t)
    total2, _ = mtl({"category": (logits, labels), "attributes": (preds_t, t64(targets))})
    assert total2.item() == pytest.approx(total.item(), rel=1e-12)


def test_multitask_rejects_missing_or_unknown_tasks():
    mtl = MultiTaskLoss({"category": CrossEntropyLoss(), "attributes": MSELoss()}, {"category": 1.0, "attributes": 1.0})
    with pytest.raises(ValueError, match="missing: \\['attributes'\\]"):
        mtl(category=(torch.zeros(2, 3), torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="unknown: \\['speaker'\\]"):
        mtl(category=(torch.zeros(2, 3), torch.tensor([0, 1])), attributes=(torch.zeros(2, 1), torch.zeros(2, 1)),
            speaker=(torch.zeros(2, 3), torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="exactly the tasks"):
        MultiTaskLoss({"category": CrossEntropyLoss()}, {"categroy": 1.0})


# ---------------------------------------------------------------- factory
def test_loss_names():
    assert set(CATEGORICAL_LOSSES) == {"ce", "weighted_ce", "focal", "soft_ce"}
    assert set(ATTRIBUTE_LOSSES) == {"ccc", "mse"}
    assert {m.value for m in LossName} == set(CATEGORICAL_LOSSES) | set(ATTRIBUTE_LOSSES)
    assert isinstance(build_loss(LossName.CCC), CCCLoss)


def test_build_loss_variants():
    inverse = torch.tensor([10 / 3, 10 / 9, 5 / 9], dtype=torch.float32)
    ce = build_loss("ce", num_classes=3)
    assert isinstance(ce, CrossEntropyLoss) and ce.weight is None
    wce = build_loss("weighted_ce", class_counts=COUNTS)
    assert_vec(wce.weight, inverse)
    sqrt_ce = build_loss("ce", class_counts=COUNTS, class_weighting="sqrt_inverse", label_smoothing=0.1)
    assert_vec(sqrt_ce.weight, torch.tensor([1.9299279630882287, 1.1142444290055749, 0.7878897916491746]))
    assert sqrt_ce.label_smoothing == 0.1
    focal = build_loss("focal", focal_gamma=1.5)
    assert isinstance(focal, FocalLoss) and focal.gamma == 1.5 and focal.alpha is None
    focal_a = build_loss("focal", class_counts=COUNTS, focal_alpha_from_weights=True)
    assert_vec(focal_a.alpha, inverse)
    soft = build_loss("soft_ce", class_counts=COUNTS, class_weighting="inverse")
    assert isinstance(soft, SoftTargetCrossEntropyLoss)
    assert_vec(soft.weight, inverse)
    ccc = build_loss("ccc", attribute_weights=[1, 1, 2])
    assert_vec(ccc.weights, torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64))
    assert isinstance(build_loss("mse"), MSELoss)


def test_build_loss_errors():
    with pytest.raises(ValueError, match="ce, weighted_ce, focal, soft_ce, ccc, mse"):
        build_loss("hinge")
    with pytest.raises(ValueError, match="needs class_counts"):
        build_loss("weighted_ce")
    with pytest.raises(ValueError, match="num_classes is 4"):
        build_loss("weighted_ce", num_classes=4, class_counts=COUNTS)
    with pytest.raises(ValueError, match="focal_alpha_from_weights"):
        build_loss("focal", class_counts=COUNTS, class_weighting="inverse")
    with pytest.raises(ValueError, match="does not use class_weighting"):
        build_loss("ccc", class_weighting="inverse")
    with pytest.raises(ValueError, match="does not use attribute_weights"):
        build_loss("ce", attribute_weights=[1, 1, 1])
    with pytest.raises(ValueError, match="class 1"):
        build_loss("weighted_ce", class_counts=[3, 0, 2])
