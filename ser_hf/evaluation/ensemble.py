"""Ensembles of trained checkpoints (seeds, folds, modalities): probability/attribute averaging,
majority vote, or a stacked logistic regression fitted on a development split.

Why: the Odyssey 2024 and IS2025 winners ensembled; averaging a few seeds of a small model also
removes much of the seed-to-seed spread that hides strategy effects on small test sets. The
combined predictions are ordinary `Predictions`, so the evaluation report and the challenge
submission files work for an ensemble exactly as for one model.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ser_hf.evaluation.report import Predictions

METHODS = ("mean", "vote", "stack", "weights")


def check_compatible(configs: Sequence[Any], names: Sequence[str]) -> None:
    """Every member must predict the same classes (same order) and the same attributes."""
    first = configs[0]
    for config, name in zip(configs[1:], names[1:]):
        if bool(first.has_categorical) != bool(config.has_categorical) or bool(first.has_attributes) != bool(config.has_attributes):
            raise ValueError(f"{name} has task {config.task!r}, {names[0]} has {first.task!r}; ensemble members must share the task")
        if first.has_categorical and list(first.labels) != list(config.labels):
            raise ValueError(f"{name} predicts classes {list(config.labels)}, {names[0]} predicts {list(first.labels)}")
        if first.has_attributes and list(first.attributes) != list(config.attributes):
            raise ValueError(f"{name} predicts attributes {list(config.attributes)}, {names[0]} predicts {list(first.attributes)}")


def _log(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probabilities, 1e-12, None))


def average(members: Sequence[Predictions], weights: Sequence[float] | None = None) -> Predictions:
    """Mean of the members' class probabilities (returned as log-probabilities) and attributes."""
    w = np.ones(len(members)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    logits = attributes = None
    if members[0].logits is not None:
        logits = _log(sum(wi * m.probabilities for wi, m in zip(w, members)))
    if members[0].attributes is not None:
        attributes = sum(wi * m.attributes for wi, m in zip(w, members))
    return Predictions(logits=logits, attributes=attributes)


def majority_vote(members: Sequence[Predictions]) -> Predictions:
    """Each member votes its top class; ties go to the higher mean probability. Scores are the vote
    shares (plus a tie-breaking 1e-3 x mean probability), attributes are averaged."""
    mean = average(members)
    logits = None
    if members[0].logits is not None:
        k = members[0].logits.shape[1]
        votes = sum(np.eye(k)[m.predicted_ids] for m in members) / len(members)
        scores = votes + 1e-3 * np.exp(mean.logits)
        logits = _log(scores / scores.sum(1, keepdims=True))
    return Predictions(logits=logits, attributes=mean.attributes)


class StackedEnsemble:
    """Logistic regression on the members' concatenated class probabilities (scikit-learn), fitted on a
    development split; attributes are a linear regression on the members' attribute predictions."""

    def __init__(self, c: float = 1.0, seed: int = 0):
        self.c, self.seed = c, seed
        self.classifier = self.regressors = None

    def fit(self, members: Sequence[Predictions], label_ids: np.ndarray | None, attributes: np.ndarray | None) -> "StackedEnsemble":
        from sklearn.linear_model import LinearRegression, LogisticRegression

        if members[0].logits is not None:
            keep = label_ids >= 0
            if keep.sum() < 2 or len(np.unique(label_ids[keep])) < 2:
                raise ValueError("stacking needs a development split with at least two labelled classes")
            x = np.hstack([m.probabilities for m in members])[keep]
            self.classifier = LogisticRegression(C=self.c, max_iter=2000, random_state=self.seed).fit(x, label_ids[keep])
            self.num_classes = members[0].logits.shape[1]
        if members[0].attributes is not None:
            self.regressors = []
            for d in range(members[0].attributes.shape[1]):
                keep = ~np.isnan(attributes[:, d])
                x = np.stack([m.attributes[:, d] for m in members], 1)[keep]
                self.regressors.append(LinearRegression().fit(x, attributes[keep, d]))
        return self

    def predict(self, members: Sequence[Predictions]) -> Predictions:
        logits = attributes = None
        if self.classifier is not None:
            proba = self.classifier.predict_proba(np.hstack([m.probabilities for m in members]))
            full = np.full((len(proba), self.num_classes), 1e-12)
            full[:, self.classifier.classes_] = proba  # a class absent from the dev split gets ~0
            logits = _log(full / full.sum(1, keepdims=True))
        if self.regressors is not None:
            attributes = np.stack(
                [r.predict(np.stack([m.attributes[:, d] for m in members], 1)) for d, r in enumerate(self.regressors)], 1
            )
        return Predictions(logits=logits, attributes=attributes)


def combine(method: str, members: Sequence[Predictions], *, dev_members=None, dev_references=None) -> Predictions:
    """Combine member predictions by ``method`` (mean, vote, stack); stack needs the dev split's members/references."""
    if method not in METHODS:
        raise ValueError(f"unknown ensemble method {method!r}; valid: {', '.join(METHODS)}")
    if method == "weights":
        raise ValueError("method weights averages checkpoints, not predictions: use average_checkpoint_weights")
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two models")
    if method == "mean":
        return average(members)
    if method == "vote":
        return majority_vote(members)
    if dev_members is None or dev_references is None:
        raise ValueError("method stack needs a development split (--dev_split) to fit the stacker on")
    stacker = StackedEnsemble().fit(dev_members, dev_references.label_ids, dev_references.attributes)
    return stacker.predict(members)


def average_checkpoint_weights(model_dirs: Sequence[str], output_dir: str) -> str:
    """Average the weights of checkpoints of one architecture (e.g. the last k checkpoints of a run)
    into one model saved at ``output_dir`` (safetensors, with the first checkpoint's processor).

    Floating-point tensors are averaged; integer buffers (counters) are taken from the first model.
    Checkpoints with different parameter names or shapes are refused, naming the first difference.
    """
    import torch

    from ser_hf.arguments import ModelArguments
    from ser_hf.experiment import build_model

    if len(model_dirs) < 2:
        raise ValueError("weight averaging needs at least two checkpoints")
    models, processor = [], None
    for path in model_dirs:
        from transformers import AutoConfig

        import ser_hf.modeling  # noqa: F401  (registers the model types)
        from ser_hf.configuration import SERSpeechConfig

        modality = "speech" if isinstance(AutoConfig.from_pretrained(path), SERSpeechConfig) else "text"
        model, proc = build_model(ModelArguments(modality=modality, model_name_or_path=path), labels=None, label_names=None, attribute_range=None)
        models.append(model)
        processor = processor or proc
    states = [m.state_dict() for m in models]
    for name, state in zip(model_dirs[1:], states[1:]):
        if state.keys() != states[0].keys():
            raise ValueError(f"{name} has different parameters than {model_dirs[0]}: {sorted(set(state) ^ set(states[0]))[:5]}")
        for key, value in state.items():
            if value.shape != states[0][key].shape:
                raise ValueError(f"{name}: {key} has shape {tuple(value.shape)}, {model_dirs[0]} has {tuple(states[0][key].shape)}")
    averaged = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            averaged[key] = torch.stack([s[key].float() for s in states]).mean(0).to(value.dtype)
        else:
            averaged[key] = value
    target = models[0]
    target.load_state_dict(averaged)
    target.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return output_dir


def evaluate_ensemble(
    model_dirs: Sequence[str],
    data_args,
    *,
    method: str = "mean",
    split: str = "test",
    dev_split: str | None = None,
    batch_size: int = 16,
    max_seconds: float | None = None,
    output_dir: str | None = None,
    bootstrap_resamples: int = 1000,
) -> dict[str, Any]:
    """Predict ``split`` with every model, combine, and score (the full report in ``output_dir``).

    The result also holds each member's own metrics (``members``) and their mean (``member_mean``),
    so the gain of the ensemble over a single model is in the same file.
    """
    from ser_hf.evaluation.report import compute_evaluation, references_from_rows, write_evaluation_report
    from ser_hf.experiment import predict_split

    if method not in METHODS:
        raise ValueError(f"unknown ensemble method {method!r}; valid: {', '.join(METHODS)}")
    if method == "stack" and not dev_split:
        raise ValueError("method stack needs --dev_split (the split the stacker is fitted on)")
    if method == "weights":
        import os

        from ser_hf.experiment import evaluate_checkpoint

        if not output_dir:
            raise ValueError("method weights saves the averaged model: give --output_dir")
        averaged = average_checkpoint_weights(model_dirs, os.path.join(output_dir, "averaged_model"))
        report = evaluate_checkpoint(
            averaged, data_args, split=split, batch_size=batch_size, max_seconds=max_seconds, output_dir=output_dir,
            bootstrap_resamples=bootstrap_resamples,
        )
        report.update({"ensemble_method": method, "models": list(model_dirs)})
        return report
    configs, members, dev_members, dataset, dev_rows = [], [], [], None, None
    for model_dir in model_dirs:
        config, rows, predictions, _, _ = predict_split(model_dir, data_args, split=split, batch_size=batch_size, max_seconds=max_seconds)
        configs.append(config)
        members.append(predictions)
        dataset = rows
        if method == "stack":
            _, dev_rows, dev_predictions, _, _ = predict_split(
                model_dir, data_args, split=dev_split, batch_size=batch_size, max_seconds=max_seconds
            )
            dev_members.append(dev_predictions)
    check_compatible(configs, list(model_dirs))
    config = configs[0]
    dev_references = references_from_rows(list(dev_rows), config) if dev_rows is not None else None
    combined = combine(method, members, dev_members=dev_members or None, dev_references=dev_references)
    member_metrics = [compute_evaluation(m, dataset, config, n_resamples=0) for m in members]
    scalar = lambda d: {k: v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}  # noqa: E731
    extra = {
        "ensemble_method": method,
        "models": list(model_dirs),
        "members": [scalar(m) for m in member_metrics],
        "member_mean": {k: float(np.mean([scalar(m)[k] for m in member_metrics])) for k in scalar(member_metrics[0])},
        "corpus": data_args.corpus,
        "split": split,
    }
    if output_dir:
        return write_evaluation_report(
            output_dir, combined, dataset, config, title=f"{data_args.corpus} {split} ({method} of {len(members)})",
            extra_metrics=extra, n_resamples=bootstrap_resamples,
        )
    report = compute_evaluation(combined, dataset, config, n_resamples=bootstrap_resamples)
    report.update(extra)
    return report


__all__ = ["METHODS", "StackedEnsemble", "average", "average_checkpoint_weights", "combine", "evaluate_ensemble", "majority_vote"]
