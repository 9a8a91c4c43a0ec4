"""Training losses for categorical SER (task 1) and attribute regression (task 2), plus class weights.

The paper's main lever against the skewed class distribution of in-the-wild corpora is the loss:
class-weighted cross-entropy and focal loss for categories, CCC loss for arousal/valence/dominance.
Every loss validates its inputs and raises a ``ValueError`` naming the offending row or class, because
a silently wrong target (an out-of-range label, an unnormalised vote distribution) trains a model that
looks fine and scores badly.

Conventions shared by all losses:

* Categorical losses take logits ``B x K`` and integer targets ``B``; ``ignore_index`` marks rows
  without a usable label. Soft-target CE takes ``B x K`` label distributions instead.
* Attribute losses take predictions and targets ``B x D`` (or ``B`` for one attribute); a NaN target
  means "this attribute is not annotated for this row" and is masked per attribute.
* Half-precision inputs are computed in float32 (float64 stays float64) so mixed precision does not
  round the loss away.
* A batch with nothing to learn from (every row ignored or masked) returns a zero that still has a
  grad_fn, so the training step neither crashes nor produces NaN.
* No host-device synchronisation in ``forward``: no ``.item()``, no Python branch on a tensor's
  values; empty batches are handled with masks and ``torch.where``. Checks that need the values
  (a label out of range, a soft target that is not a distribution) run only on CPU tensors, where
  they cost no sync -- in tests, and wherever the loss is called on host data. On an accelerator the
  loss trusts its targets: the collators (`SERTargets`) validate every label when they build a batch.
"""
from __future__ import annotations

from enum import Enum
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ATTRIBUTE_LOSSES",
    "CATEGORICAL_LOSSES",
    "CLASS_WEIGHT_SCHEMES",
    "CCCLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "LossName",
    "MSELoss",
    "MultiTaskLoss",
    "SoftTargetCrossEntropyLoss",
    "build_loss",
    "class_counts",
    "class_weights",
    "concordance_correlation",
]

CLASS_WEIGHT_SCHEMES = ("none", "inverse", "sqrt_inverse", "effective_number")


class LossName(str, Enum):
    """Names accepted by :func:`build_loss` (the values are what configs and the CLI use)."""

    CE = "ce"
    WEIGHTED_CE = "weighted_ce"
    FOCAL = "focal"
    SOFT_CE = "soft_ce"
    CCC = "ccc"
    MSE = "mse"


CATEGORICAL_LOSSES = (LossName.CE.value, LossName.WEIGHTED_CE.value, LossName.FOCAL.value, LossName.SOFT_CE.value)
ATTRIBUTE_LOSSES = (LossName.CCC.value, LossName.MSE.value)


# --------------------------------------------------------------------------------------------------
# Class counts and weights
# --------------------------------------------------------------------------------------------------
def class_counts(labels, num_classes: int, ignore_index: int | None = None) -> torch.Tensor:
    """Count integer ``labels`` per class (int64, length ``num_classes``).

    Rows equal to ``ignore_index`` are skipped only when it is given; any other label outside
    ``[0, num_classes)`` raises, naming the row, instead of being dropped.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    labels = torch.as_tensor(labels)
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
    if labels.numel() and (labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    labels = labels.long()
    keep = torch.ones_like(labels, dtype=torch.bool) if ignore_index is None else labels != ignore_index
    _raise_on_bad_labels(labels, keep, num_classes)
    return torch.bincount(labels[keep], minlength=num_classes)


def class_weights(
    counts,
    scheme: str,
    beta: float = 0.999,
    *,
    label_names: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Per-class loss weights from training-split class ``counts`` (length K).

    * ``"none"``: all ones.
    * ``"inverse"``: ``N / (K * n_c)`` (the IS2025 challenge baseline).
    * ``"sqrt_inverse"``: proportional to ``1 / sqrt(n_c)`` -- a milder rebalancing.
    * ``"effective_number"``: proportional to ``(1 - beta) / (1 - beta**n_c)`` (Cui et al., 2019), which
      saturates for large classes because extra samples of a big class are increasingly redundant.

    The last two are scaled so that ``sum_c n_c * w_c == N``: the average weight per training sample is 1,
    so switching scheme does not change the effective learning rate. ("inverse" satisfies this already.)
    A class with count 0 cannot be weighted (it would get an infinite weight) and raises, naming it.
    """
    if scheme not in CLASS_WEIGHT_SCHEMES:
        raise ValueError(f"unknown class weighting scheme {scheme!r}; valid: {', '.join(CLASS_WEIGHT_SCHEMES)}")
    n = torch.as_tensor(counts, dtype=torch.float64).detach().cpu()
    if n.dim() != 1 or n.numel() == 0:
        raise ValueError(f"counts must be a non-empty 1-D sequence, got shape {tuple(n.shape)}")
    if label_names is not None and len(label_names) != n.numel():
        raise ValueError(f"label_names has {len(label_names)} entries but counts has {n.numel()}")
    for c, value in enumerate(n.tolist()):
        if not value > 0:  # also catches NaN
            name = f"class {c}" if label_names is None else f"class {c} ({label_names[c]!r})"
            raise ValueError(
                f"{name} has count {value:g} in the training split; every class needs at least one example "
                "to get a finite weight (drop the class or fix the split)"
            )
    if scheme == "none":
        weights = torch.ones_like(n)
    elif scheme == "inverse":
        weights = n.sum() / (n.numel() * n)
    else:
        if scheme == "sqrt_inverse":
            raw = n.rsqrt()
        else:
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"effective_number needs 0 <= beta < 1, got {beta}")
            # 1 - beta**n computed as -expm1(n*log(beta)) stays accurate when beta is close to 1.
            raw = (1.0 - beta) / -torch.expm1(n * torch.log(torch.tensor(beta, dtype=torch.float64)))
        weights = raw * (n.sum() / (n * raw).sum())
    return weights.to(dtype)


def _raise_on_bad_labels(targets: torch.Tensor, keep: torch.Tensor, num_classes: int) -> None:
    """Raise naming the first kept row whose label is outside ``[0, num_classes)``."""
    bad = keep & ((targets < 0) | (targets >= num_classes))
    if bool(bad.any()):
        row = int(torch.nonzero(bad)[0])
        raise ValueError(
            f"target {int(targets[row])} at row {row} is outside [0, {num_classes}) "
            "and is not the ignore_index"
        )


# --------------------------------------------------------------------------------------------------
# Shared input handling
# --------------------------------------------------------------------------------------------------
def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """float16/bfloat16 -> float32; float32/float64 unchanged."""
    return torch.promote_types(tensor.dtype, torch.float32)


def _class_vector(values, name: str) -> torch.Tensor | None:
    """Turn an optional per-class vector into a 1-D float tensor, rejecting negative or non-finite entries."""
    if values is None:
        return None
    vec = torch.as_tensor(values)
    if not vec.is_floating_point():
        vec = vec.to(torch.get_default_dtype())
    vec = vec.detach().clone()
    if vec.dim() != 1 or vec.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D per-class vector, got shape {tuple(vec.shape)}")
    bad = ~torch.isfinite(vec) | (vec < 0)
    if bool(bad.any()):
        c = int(torch.nonzero(bad)[0])
        raise ValueError(f"{name}[{c}] = {float(vec[c])} must be finite and >= 0")
    return vec


def _check_class_vector_length(vec: torch.Tensor | None, num_classes: int, name: str) -> None:
    if vec is not None and vec.numel() != num_classes:
        raise ValueError(f"{name} has {vec.numel()} entries but the logits have {num_classes} classes")


def _on_host(tensor: torch.Tensor) -> bool:
    """Value checks run only here: reading a CPU tensor's values never waits for a device."""
    return tensor.device.type == "cpu"


def _safe_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator``, or a graph-connected 0 where the denominator is 0 (no sync, no NaN)."""
    positive = denominator > 0
    return torch.where(positive, numerator / torch.where(positive, denominator, torch.ones_like(denominator)), numerator * 0.0)


def _hard_target_mask(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Validate ``B x K`` logits against ``B`` integer targets; return the mask of non-ignored rows."""
    if logits.dim() != 2:
        raise ValueError(f"logits must be B x K, got shape {tuple(logits.shape)}")
    if targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"targets must be 1-D with one entry per logits row ({logits.shape[0]}), got shape {tuple(targets.shape)}"
        )
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise ValueError(f"targets must be integer class indices, got dtype {targets.dtype}")
    keep = targets != ignore_index
    if _on_host(targets):
        _raise_on_bad_labels(targets, keep, logits.shape[1])
    return keep


def _zero_loss(reference: torch.Tensor) -> torch.Tensor:
    """A 0 that is still connected to the graph (so ``loss.backward()`` works on an empty batch)."""
    return reference.sum() * 0.0


# --------------------------------------------------------------------------------------------------
# Categorical losses
# --------------------------------------------------------------------------------------------------
class CrossEntropyLoss(nn.Module):
    """(Class-weighted, optionally label-smoothed) cross-entropy over non-ignored rows.

    Reduction is the weighted mean used by ``torch.nn.CrossEntropyLoss``:
    ``sum_i w_{y_i} l_i / sum_i w_{y_i}``, so weights change the relative importance of classes, not the
    loss scale. With label smoothing ``eps`` each row's loss is
    ``(1-eps) w_y (-log p_y) + eps/K sum_c w_c (-log p_c)`` (torch's definition). If every row is ignored
    the loss is a graph-connected 0 instead of torch's NaN.
    """

    def __init__(self, weight=None, label_smoothing: float = 0.0, ignore_index: int = -100):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self.ignore_index = int(ignore_index)
        self.register_buffer("weight", _class_vector(weight, "weight"))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        keep = _hard_target_mask(logits, targets, self.ignore_index)
        _check_class_vector_length(self.weight, logits.shape[1], "weight")
        dtype = _compute_dtype(logits)
        logits = logits.to(dtype)
        weight = None if self.weight is None else self.weight.to(dtype)
        total = F.cross_entropy(
            logits,
            targets.long(),
            weight=weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction="sum",
        )
        if weight is None:
            denominator = keep.sum().to(dtype)
        else:
            safe = torch.where(keep, targets, torch.zeros_like(targets)).long()
            denominator = (weight[safe] * keep).sum()
        return _safe_ratio(total, denominator)

    def extra_repr(self) -> str:
        return f"weighted={self.weight is not None}, label_smoothing={self.label_smoothing}, ignore_index={self.ignore_index}"


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017): ``-alpha_y (1 - p_y)**gamma log p_y``.

    The ``(1 - p_y)**gamma`` factor shrinks the loss of examples the model already gets right, so the
    gradient concentrates on hard (often minority-class) examples. ``alpha`` is an optional per-class
    weight vector.

    Normalisation: the plain mean over non-ignored rows (the count of rows, *not* ``sum alpha_y``), as in
    the original paper's per-anchor normalisation. Hence ``gamma=0, alpha=None`` equals plain CE, while
    ``gamma=0`` with ``alpha`` is ``sum alpha_y l / n`` rather than weighted CE's ``sum alpha_y l / sum alpha_y``.
    Computed from ``log_softmax`` (with ``1 - p = -expm1(log p)``) so confident logits neither overflow
    nor give NaN gradients. If every row is ignored the loss is a graph-connected 0.
    """

    def __init__(self, gamma: float = 2.0, alpha=None, ignore_index: int = -100):
        super().__init__()
        if not gamma >= 0.0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.ignore_index = int(ignore_index)
        self.register_buffer("alpha", _class_vector(alpha, "alpha"))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        keep = _hard_target_mask(logits, targets, self.ignore_index)
        _check_class_vector_length(self.alpha, logits.shape[1], "alpha")
        dtype = _compute_dtype(logits)
        # Every row is computed and the ignored ones masked out: no boolean indexing, no sync.
        kept = torch.where(keep, targets, torch.zeros_like(targets)).long()
        log_p = F.log_softmax(logits.to(dtype), dim=-1).gather(1, kept[:, None]).squeeze(1)
        loss = -log_p
        if self.gamma != 0.0:
            one_minus_p = (-torch.expm1(log_p)).clamp(min=0.0)
            if self.gamma < 1.0:
                # d/dp (1-p)**gamma is infinite at p == 1 for gamma < 1; clamping there zeroes that
                # gradient instead of turning it into inf * 0 = NaN.
                one_minus_p = one_minus_p.clamp(min=torch.finfo(dtype).tiny)
            loss = one_minus_p.pow(self.gamma) * loss
        if self.alpha is not None:
            loss = self.alpha.to(dtype)[kept] * loss
        loss = torch.where(keep, loss, torch.zeros_like(loss))
        return loss.sum() / keep.sum().clamp(min=1).to(dtype)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha is not None}, ignore_index={self.ignore_index}"


class SoftTargetCrossEntropyLoss(nn.Module):
    """Cross-entropy against label distributions (``B x K``, rows sum to 1), e.g. normalised annotator votes.

    Soft targets keep the ambiguity of emotional speech that a majority vote throws away. With per-class
    ``weight`` the loss is ``sum_i sum_c w_c t_ic (-log p_ic) / sum_i sum_c w_c t_ic``, which reduces
    exactly to :class:`CrossEntropyLoss` (weighted mean) for one-hot targets. Targets must be finite,
    non-negative and sum to 1 per row (tolerance 1e-3); a violating row raises, naming it.
    """

    row_sum_tolerance = 1e-3

    def __init__(self, weight=None):
        super().__init__()
        self.register_buffer("weight", _class_vector(weight, "weight"))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 2:
            raise ValueError(f"logits must be B x K, got shape {tuple(logits.shape)}")
        if targets.shape != logits.shape:
            raise ValueError(
                f"soft targets must have the logits' shape {tuple(logits.shape)}, got {tuple(targets.shape)}"
            )
        if not targets.is_floating_point():
            raise ValueError(f"soft targets must be floating point distributions, got dtype {targets.dtype}")
        _check_class_vector_length(self.weight, logits.shape[1], "weight")
        dtype = _compute_dtype(logits)
        targets = targets.to(dtype)
        if _on_host(targets):
            self._check_distributions(targets)
        if logits.shape[0] == 0:
            return _zero_loss(logits)
        weighted = targets if self.weight is None else targets * self.weight.to(dtype)
        total = -(weighted * F.log_softmax(logits.to(dtype), dim=-1)).sum()
        return _safe_ratio(total, weighted.sum())

    def _check_distributions(self, targets: torch.Tensor) -> None:
        bad = ~torch.isfinite(targets).all(1) | (targets < 0).any(1) | ((targets.sum(1) - 1).abs() > self.row_sum_tolerance)
        if bool(bad.any()):
            row = int(torch.nonzero(bad)[0])
            raise ValueError(
                f"soft target row {row} = {targets[row].tolist()} is not a distribution "
                "(entries must be finite, >= 0 and sum to 1)"
            )

    def extra_repr(self) -> str:
        return f"weighted={self.weight is not None}"


# --------------------------------------------------------------------------------------------------
# Attribute (dimensional) losses
# --------------------------------------------------------------------------------------------------
def _attribute_inputs(preds: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None):
    """Validate ``B x D`` (or ``B``) preds/targets; return them as ``B x D`` and the validity mask.

    A target entry is valid when it is not NaN and (if given) ``mask`` is True there.
    """
    if preds.shape != targets.shape:
        raise ValueError(f"preds shape {tuple(preds.shape)} != targets shape {tuple(targets.shape)}")
    if preds.dim() == 1:
        preds, targets = preds[:, None], targets[:, None]
        mask = None if mask is None else mask[:, None]
    if preds.dim() != 2:
        raise ValueError(f"preds/targets must be B x D (or B), got shape {tuple(preds.shape)}")
    if not targets.is_floating_point():
        raise ValueError(f"attribute targets must be floating point (NaN = missing), got dtype {targets.dtype}")
    dtype = _compute_dtype(preds)
    preds, targets = preds.to(dtype), targets.to(dtype)
    valid = ~torch.isnan(targets)
    if mask is not None:
        if mask.shape != preds.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} != preds shape {tuple(preds.shape)}")
        valid = valid & mask.to(torch.bool)
    # Zero out invalid entries so NaN targets cannot leak into sums (or their gradients).
    targets = torch.where(valid, targets, torch.zeros_like(targets))
    return preds, targets, valid


def _masked_ccc(preds, targets, valid, eps):
    """Per-attribute CCC over valid rows and the number of valid rows; finite even when that number is 0 or 1."""
    m = valid.to(preds.dtype)
    n = m.sum(0)
    n_safe = n.clamp(min=1.0)
    mean_p = (preds * m).sum(0) / n_safe
    mean_t = (targets * m).sum(0) / n_safe
    dp = (preds - mean_p) * m
    dt = (targets - mean_t) * m
    cov = (dp * dt).sum(0) / n_safe
    var_p = (dp * dp).sum(0) / n_safe
    var_t = (dt * dt).sum(0) / n_safe
    ccc = 2.0 * cov / (var_p + var_t + (mean_p - mean_t) ** 2 + eps)
    return ccc, n


def concordance_correlation(
    preds: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8
) -> torch.Tensor:
    """Per-attribute concordance correlation coefficient (length D) with population statistics.

    ``CCC = 2 cov(p, t) / (var p + var t + (mean p - mean t)**2 + eps)`` over the rows where the target is
    not NaN (and ``mask`` is True). An attribute with no valid row gets NaN (undefined); one valid row
    or constant predictions give 0, not NaN, thanks to ``eps``.
    """
    preds, targets, valid = _attribute_inputs(preds, targets, mask)
    ccc, n = _masked_ccc(preds, targets, valid, eps)
    return torch.where(n > 0, ccc, torch.full_like(ccc, float("nan")))


def _attribute_weights(weights) -> torch.Tensor | None:
    """Validate optional per-attribute weights and normalise them to sum to 1."""
    if weights is None:
        return None
    w = torch.as_tensor(weights, dtype=torch.float64).detach().clone()
    if w.dim() != 1 or w.numel() == 0:
        raise ValueError(f"attribute weights must be a non-empty 1-D sequence, got shape {tuple(w.shape)}")
    bad = ~torch.isfinite(w) | (w < 0)
    if bool(bad.any()):
        d = int(torch.nonzero(bad)[0])
        raise ValueError(f"attribute weight {d} = {float(w[d])} must be finite and >= 0")
    if float(w.sum()) <= 0:
        raise ValueError("attribute weights must not all be zero")
    return w / w.sum()


def _weighted_attribute_sum(per_attribute: torch.Tensor, n_valid: torch.Tensor, weights: torch.Tensor | None):
    """``sum_d w_d * per_attribute_d`` where attributes without valid rows contribute 0 (no renormalisation)."""
    num = per_attribute.shape[0]
    if weights is None:
        w = torch.full_like(per_attribute, 1.0 / num)
    else:
        if weights.numel() != num:
            raise ValueError(f"{weights.numel()} attribute weights given but the predictions have {num} attributes")
        w = weights.to(per_attribute)
    per_attribute = torch.where(n_valid > 0, per_attribute, torch.zeros_like(per_attribute))
    return (w * per_attribute).sum()


class CCCLoss(nn.Module):
    """``sum_d w_d (1 - CCC_d)``: directly optimises the task-2 metric.

    CCC is a *batch* statistic (means/variances are over the batch rows), so the loss of one batch is not an
    average of per-sample terms and is noisy for small batches; a batch of one always gives CCC 0 (loss
    contribution ``w_d``). Weights are normalised to sum to 1 (default: equal). Rows with a NaN target are
    masked per attribute; an attribute with no valid row contributes 0 (weights are not renormalised).
    """

    def __init__(self, weights=None, eps: float = 1e-8):
        super().__init__()
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.eps = float(eps)
        self.register_buffer("weights", _attribute_weights(weights))

    def forward(self, preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        preds, targets, valid = _attribute_inputs(preds, targets, None)
        ccc, n = _masked_ccc(preds, targets, valid, self.eps)
        return _weighted_attribute_sum(1.0 - ccc, n, self.weights)

    def extra_repr(self) -> str:
        weights = None if self.weights is None else [round(float(w), 4) for w in self.weights]
        return f"weights={weights}, eps={self.eps}"


class MSELoss(nn.Module):
    """``sum_d w_d MSE_d`` with ``MSE_d`` the mean squared error over rows whose target ``d`` is not NaN.

    Per-attribute means (rather than one mean over all valid entries) keep a sparsely annotated attribute
    from being drowned out. Weights are normalised to sum to 1 (default equal); an attribute with no valid
    row contributes 0.
    """

    def __init__(self, weights=None):
        super().__init__()
        self.register_buffer("weights", _attribute_weights(weights))

    def forward(self, preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        preds, targets, valid = _attribute_inputs(preds, targets, None)
        m = valid.to(preds.dtype)
        n = m.sum(0)
        mse = (((preds - targets) * m) ** 2).sum(0) / n.clamp(min=1.0)
        return _weighted_attribute_sum(mse, n, self.weights)

    def extra_repr(self) -> str:
        weights = None if self.weights is None else [round(float(w), 4) for w in self.weights]
        return f"weights={weights}"


# --------------------------------------------------------------------------------------------------
# Multi-task combination
# --------------------------------------------------------------------------------------------------
class MultiTaskLoss(nn.Module):
    """Weighted sum of named task losses, e.g. ``{"category": FocalLoss(), "attributes": CCCLoss()}``.

    Call as ``total, parts = loss(category=(logits, labels), attributes=(preds, avd))`` or with one dict
    ``loss({"category": (logits, labels), ...})``. Every task must be given each call (a missing task is an
    error, not a silent 0; mask missing labels inside the task with ``ignore_index`` / NaN instead).
    ``parts`` maps task name to its *unweighted* loss (still attached to the graph; call ``.item()`` to log).
    """

    def __init__(self, losses: Mapping[str, nn.Module], weights: Mapping[str, float] | None = None):
        super().__init__()
        if not losses:
            raise ValueError("MultiTaskLoss needs at least one task loss")
        weights = {name: 1.0 for name in losses} if weights is None else dict(weights)
        if set(weights) != set(losses):
            raise ValueError(
                f"weights must name exactly the tasks {sorted(losses)}; got {sorted(weights)}"
            )
        for name, value in weights.items():
            if not (float(value) >= 0.0 and float(value) < float("inf")):
                raise ValueError(f"weight of task {name!r} must be finite and >= 0, got {value}")
        self.losses = nn.ModuleDict(dict(losses))
        self.weights = {name: float(weights[name]) for name in losses}

    def forward(self, inputs: Mapping[str, tuple] | None = None, /, **tasks):
        given = dict(inputs or {})
        overlap = set(given) & set(tasks)
        if overlap:
            raise ValueError(f"tasks {sorted(overlap)} given both in the dict and as keywords")
        given.update(tasks)
        unknown = set(given) - set(self.losses)
        missing = set(self.losses) - set(given)
        if unknown or missing:
            raise ValueError(
                f"MultiTaskLoss expects tasks {sorted(self.losses)}; unknown: {sorted(unknown)}, missing: {sorted(missing)}"
            )
        parts = {}
        total = None
        for name, loss_fn in self.losses.items():
            pair = given[name]
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"task {name!r} must be given as (prediction, target)")
            parts[name] = loss_fn(*pair)
            term = self.weights[name] * parts[name]
            total = term if total is None else total + term
        return total, parts

    def extra_repr(self) -> str:
        return f"weights={self.weights}"


# --------------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------------
def build_loss(
    name: str,
    *,
    num_classes: int | None = None,
    class_counts: Sequence[int] | torch.Tensor | None = None,
    class_weighting: str = "none",
    focal_gamma: float = 2.0,
    focal_alpha_from_weights: bool = False,
    label_smoothing: float = 0.0,
    attribute_weights: Sequence[float] | None = None,
) -> nn.Module:
    """Build a loss from config values.

    * ``"ce"``: CE, class-weighted by ``class_weighting`` when that is not ``"none"``.
    * ``"weighted_ce"``: CE weighted by ``class_weighting`` (``"inverse"`` when left at ``"none"``).
    * ``"focal"``: focal loss; with ``focal_alpha_from_weights`` its alpha is the class weights
      (scheme ``class_weighting``, ``"inverse"`` when left at ``"none"``).
    * ``"soft_ce"``: soft-target CE, class-weighted like ``"ce"``.
    * ``"ccc"`` / ``"mse"``: attribute losses weighted by ``attribute_weights``.

    Any weighting needs ``class_counts`` (training split). Options that the chosen loss would not use
    must stay at their defaults -- a requested setting is never silently ignored.
    """
    value = name.value if isinstance(name, LossName) else name
    valid = CATEGORICAL_LOSSES + ATTRIBUTE_LOSSES
    if value not in valid:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(valid)}")
    if class_weighting not in CLASS_WEIGHT_SCHEMES:
        raise ValueError(
            f"unknown class_weighting {class_weighting!r}; valid: {', '.join(CLASS_WEIGHT_SCHEMES)}"
        )
    if num_classes is not None and class_counts is not None and len(class_counts) != num_classes:
        raise ValueError(f"class_counts has {len(class_counts)} entries but num_classes is {num_classes}")

    def unused(option: str, is_set: bool) -> None:
        if is_set:
            raise ValueError(f"loss {value!r} does not use {option}; leave it at its default")

    if value != LossName.FOCAL.value:
        unused("focal_gamma", focal_gamma != 2.0)
        unused("focal_alpha_from_weights", focal_alpha_from_weights)
    if value in ATTRIBUTE_LOSSES:
        unused("num_classes", num_classes is not None)
        unused("class_weighting", class_weighting != "none")
        unused("class_counts", class_counts is not None)
        unused("label_smoothing", label_smoothing != 0.0)
        return CCCLoss(weights=attribute_weights) if value == LossName.CCC.value else MSELoss(weights=attribute_weights)

    unused("attribute_weights", attribute_weights is not None)

    def weights_for(scheme: str) -> torch.Tensor | None:
        if scheme == "none":
            return None
        if class_counts is None:
            raise ValueError(f"loss {value!r} with class weighting {scheme!r} needs class_counts from the training split")
        return class_weights(class_counts, scheme)

    if value == LossName.CE.value:
        return CrossEntropyLoss(weight=weights_for(class_weighting), label_smoothing=label_smoothing)
    if value == LossName.WEIGHTED_CE.value:
        scheme = "inverse" if class_weighting == "none" else class_weighting
        return CrossEntropyLoss(weight=weights_for(scheme), label_smoothing=label_smoothing)
    if value == LossName.FOCAL.value:
        unused("label_smoothing", label_smoothing != 0.0)
        if class_weighting != "none" and not focal_alpha_from_weights:
            raise ValueError(
                f"focal loss got class_weighting={class_weighting!r} but focal_alpha_from_weights=False; "
                "set focal_alpha_from_weights=True to use the class weights as alpha"
            )
        alpha = None
        if focal_alpha_from_weights:
            alpha = weights_for("inverse" if class_weighting == "none" else class_weighting)
        return FocalLoss(gamma=focal_gamma, alpha=alpha)
    # soft_ce
    unused("label_smoothing", label_smoothing != 0.0)
    return SoftTargetCrossEntropyLoss(weight=weights_for(class_weighting))


# --------------------------------------------------------------------------------------------------
# Soft targets (annotator distributions, mixup): focal loss and the factory used when targets are soft
# --------------------------------------------------------------------------------------------------
class SoftTargetFocalLoss(nn.Module):
    """Focal loss on label distributions: ``-sum_c alpha_c q_c (1 - p_c)**gamma log p_c``, mean over rows.

    ``q`` is a row's target distribution (annotator votes, or a mixup of two one-hot labels). Each class
    the target puts mass on contributes its own focal term, so a row that is 70/30 between two classes is
    70 % "learn class a" and 30 % "learn class b", each down-weighted once the model is confident there.
    For one-hot targets it equals :class:`FocalLoss` exactly (same per-row terms, same plain mean over
    rows); ``gamma=0, alpha=None`` is soft cross-entropy with a per-row mean. Rows whose target is all
    zeros carry no label and are skipped (a batch of only such rows gives a graph-connected 0); any other
    row must be finite, >= 0 and sum to 1 (tolerance 1e-3), else a ValueError names it.
    """

    row_sum_tolerance = 1e-3

    def __init__(self, gamma: float = 2.0, alpha=None):
        super().__init__()
        if not gamma >= 0.0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.register_buffer("alpha", _class_vector(alpha, "alpha"))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        dtype, keep = _soft_target_rows(logits, targets, self.row_sum_tolerance)
        _check_class_vector_length(self.alpha, logits.shape[1], "alpha")
        if not bool(keep.any()):
            return _zero_loss(logits)
        q = targets[keep].to(dtype)
        log_p = F.log_softmax(logits[keep].to(dtype), dim=-1)
        terms = -log_p
        if self.gamma != 0.0:
            one_minus_p = (-torch.expm1(log_p)).clamp(min=0.0)
            if self.gamma < 1.0:
                one_minus_p = one_minus_p.clamp(min=torch.finfo(dtype).tiny)
            terms = one_minus_p.pow(self.gamma) * terms
        if self.alpha is not None:
            terms = terms * self.alpha.to(dtype)
        return (q * terms).sum(1).mean()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha is not None}"


def _soft_target_rows(logits: torch.Tensor, targets: torch.Tensor, tolerance: float):
    """Validate ``B x K`` soft targets; return the compute dtype and the rows that carry a label."""
    if logits.dim() != 2:
        raise ValueError(f"logits must be B x K, got shape {tuple(logits.shape)}")
    if targets.shape != logits.shape:
        raise ValueError(f"soft targets must have the logits' shape {tuple(logits.shape)}, got {tuple(targets.shape)}")
    if not targets.is_floating_point():
        raise ValueError(f"soft targets must be floating point distributions, got dtype {targets.dtype}")
    dtype = _compute_dtype(logits)
    t = targets.to(dtype)
    sums = t.sum(1)
    keep = sums != 0
    bad = ~torch.isfinite(t).all(1) | (t < 0).any(1) | (keep & ((sums - 1).abs() > tolerance))
    if bool(bad.any()):
        row = int(torch.nonzero(bad)[0])
        raise ValueError(
            f"soft target row {row} = {t[row].tolist()} is not a distribution (entries must be finite, >= 0 and sum to 1)"
        )
    return dtype, keep


class LabelledRowsSoftCrossEntropyLoss(SoftTargetCrossEntropyLoss):
    """:class:`SoftTargetCrossEntropyLoss` that skips rows whose target is all zeros (no label), so a
    batch mixing labelled and unlabelled rows (multi-task data) trains on the labelled ones."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _, keep = _soft_target_rows(logits, targets, self.row_sum_tolerance)
        if not bool(keep.any()):
            return _zero_loss(logits)
        return super().forward(logits[keep], targets[keep])


def build_soft_target_loss(
    name: str,
    *,
    class_counts: Sequence[int] | torch.Tensor | None = None,
    class_weighting: str = "none",
    focal_gamma: float = 2.0,
) -> nn.Module:
    """The soft-target counterpart of a categorical loss (used for annotator distributions and mixup).

    ``ce``/``soft_ce`` -> soft CE weighted by ``class_weighting``; ``weighted_ce`` -> soft CE with
    ``class_weighting`` (``inverse`` when ``none``); ``focal`` -> :class:`SoftTargetFocalLoss` with the
    class weights as alpha when ``class_weighting`` is set. All reduce to their hard-label loss on one-hot rows.
    """
    if name not in CATEGORICAL_LOSSES:
        raise ValueError(f"no soft-target version of loss {name!r}; valid: {', '.join(CATEGORICAL_LOSSES)}")
    scheme = "inverse" if name == LossName.WEIGHTED_CE.value and class_weighting == "none" else class_weighting
    weights = None
    if scheme != "none":
        if class_counts is None:
            raise ValueError(f"loss {name!r} with class weighting {scheme!r} needs class_counts from the training split")
        weights = class_weights(class_counts, scheme)
    if name == LossName.FOCAL.value:
        return SoftTargetFocalLoss(gamma=focal_gamma, alpha=weights)
    return LabelledRowsSoftCrossEntropyLoss(weight=weights)
