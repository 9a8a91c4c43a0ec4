"""The mixup family: input mixup, manifold mixup and overlap mixing, with label mixing.

Why: mixing pairs of training examples (and their labels) regularises small SER models and was part
of the IS2025 winning systems. Partners and weights come from ``row_generator(row, seed, "mixing")``
(a pure function of seed, epoch and example index), so a resumed run mixes exactly the same pairs;
the partner is drawn *within the batch*, so a balanced sampler's batch composition carries over.

Kinds (one ``mixing`` mapping, e.g. ``{"type": "input", "alpha": 0.4, "p": 1.0}``):

* ``input``: ``x = lam * x_i + (1 - lam) * x_j`` on the waveform (partner tiled/cropped to ``x_i``'s
  length), ``lam ~ Beta(alpha, alpha)``; targets ``lam * y_i + (1 - lam) * y_j``.
* ``manifold``: the same ``lam``/partner applied model-side to the pooled vectors
  (``ser_hf.modeling.mixup``); the collator only emits ``mix_index`` / ``mix_lambda`` and mixed targets.
* ``overlap``: two utterances summed, ``x = x_i + g * x_j`` with the partner at a relative level drawn
  from ``level_db`` (partner shorter than ``x_i`` is zero-padded, longer is cropped). Labels are
  averaged by **energy share** in the mixture (``w_i = E_i / (E_i + g**2 E_j)``) by default, or
  ``label_weights: equal`` (0.5/0.5).

Categorical targets become distributions (``label_distribution``, B x K) that the soft versions of
CE / weighted CE / focal train on (class weights apply per class); attributes mix linearly (a NaN
on either side stays NaN, i.e. masked). A row whose partner has no class label is not mixed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ser_hf.data.randomness import row_generator
from ser_hf.data.strategy_options import strategy_value

MIXING_TYPES = ("input", "manifold", "overlap")
_DEFAULTS = {"type": None, "p": 1.0, "alpha": 0.4, "level_db": [-5.0, 5.0], "label_weights": "energy"}


def parse_mixing_config(value) -> dict[str, Any] | None:
    """Validate a ``mixing`` mapping (or JSON text); None/{} -> None."""
    value = strategy_value(value, name="mixing", presets={kind: {"type": kind} for kind in MIXING_TYPES})
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise ValueError(f"mixing must be a mapping like {{'type': 'input', 'alpha': 0.4}}, got {value!r}")
    unknown = sorted(set(value) - set(_DEFAULTS))
    if unknown:
        raise ValueError(f"mixing: unknown settings {unknown}; valid: {sorted(_DEFAULTS)}")
    config = {**_DEFAULTS, **value}
    if config["type"] not in MIXING_TYPES:
        raise ValueError(f"mixing.type must be one of {', '.join(MIXING_TYPES)}, got {config['type']!r}")
    if not 0.0 <= float(config["p"]) <= 1.0:
        raise ValueError(f"mixing.p must be in [0, 1], got {config['p']}")
    if not float(config["alpha"]) > 0:
        raise ValueError(f"mixing.alpha must be > 0, got {config['alpha']}")
    level = config["level_db"]
    if not isinstance(level, (list, tuple)) or len(level) != 2 or float(level[0]) > float(level[1]):
        raise ValueError(f"mixing.level_db must be [low, high], got {level!r}")
    if config["label_weights"] not in ("energy", "equal"):
        raise ValueError(f"mixing.label_weights must be energy or equal, got {config['label_weights']!r}")
    if config["type"] != "overlap" and value.get("label_weights") is not None:
        raise ValueError("mixing.label_weights applies to type overlap only")
    config["p"], config["alpha"] = float(config["p"]), float(config["alpha"])
    config["level_db"] = [float(level[0]), float(level[1])]
    return config


def _fit(wave: np.ndarray, length: int, tile: bool) -> np.ndarray:
    if len(wave) >= length:
        return wave[:length]
    if tile and len(wave):
        return np.tile(wave, -(-length // len(wave)))[:length]
    return np.pad(wave, (0, length - len(wave)))


@dataclass
class MixPlan:
    """Per row of a batch: the partner's position in the batch and the weight of the row's own label
    (``label_weight``); ``signal_weight`` is the row's own weight in the signal (``lam`` for input and
    manifold mixup, 1 for overlap, where the partner is added with ``partner_gain``)."""

    partner: np.ndarray
    label_weight: np.ndarray
    signal_weight: np.ndarray
    partner_gain: np.ndarray

    @property
    def mixed(self) -> np.ndarray:
        return self.partner != np.arange(len(self.partner))


@dataclass
class Mixer:
    config: dict[str, Any]
    seed: int = 0

    @classmethod
    def from_config(cls, value, seed: int = 0) -> "Mixer | None":
        config = parse_mixing_config(value)
        return None if config is None else cls(config, seed)

    @property
    def kind(self) -> str:
        return self.config["type"]

    def plan(self, rows: list[dict], waves: list[np.ndarray] | None, has_label: np.ndarray | None) -> MixPlan | None:
        """Draw partners and weights; None for an evaluation batch (rows without epoch/index)."""
        n = len(rows)
        partner = np.arange(n)
        label_weight = np.ones(n)
        signal_weight = np.ones(n)
        gain = np.zeros(n)
        any_training = False
        for i, row in enumerate(rows):
            rng = row_generator(row, self.seed, "mixing")
            if rng is None:
                continue
            any_training = True
            fire = rng.random() < self.config["p"]
            j = int(rng.integers(n))
            lam = float(rng.beta(self.config["alpha"], self.config["alpha"]))
            level_db = float(rng.uniform(*self.config["level_db"]))
            if not fire or j == i or (has_label is not None and not (has_label[i] and has_label[j])):
                continue
            partner[i] = j
            if self.kind == "overlap":
                own = waves[i]
                other = _fit(waves[j], len(own), tile=False)
                e_own, e_other = float(np.sum(own.astype(np.float64) ** 2)), float(np.sum(other.astype(np.float64) ** 2))
                g = 0.0 if e_other == 0 else float(np.sqrt(e_own / e_other) * 10 ** (level_db / 20.0))
                gain[i] = g
                if self.config["label_weights"] == "equal":
                    label_weight[i] = 0.5
                else:
                    total = e_own + g * g * e_other
                    label_weight[i] = 1.0 if total == 0 else e_own / total
            else:
                label_weight[i] = signal_weight[i] = lam
        return MixPlan(partner, label_weight, signal_weight, gain) if any_training else None

    def mix_waves(self, waves: list[np.ndarray], plan: MixPlan) -> list[np.ndarray]:
        """Input mixup / overlap on the (already cropped and augmented) waveforms; manifold: unchanged."""
        if self.kind == "manifold":
            return waves
        out = []
        for i, own in enumerate(waves):
            j = int(plan.partner[i])
            if j == i:
                out.append(own)
                continue
            if self.kind == "input":
                other = _fit(waves[j], len(own), tile=True)
                out.append((plan.signal_weight[i] * own + (1 - plan.signal_weight[i]) * other).astype(np.float32))
            else:
                other = _fit(waves[j], len(own), tile=False)
                mixed = own + plan.partner_gain[i] * other
                peak = float(np.abs(mixed).max()) if len(mixed) else 0.0
                out.append((mixed / peak if peak > 1.0 else mixed).astype(np.float32))
        return out

    @staticmethod
    def mix_targets(batch: dict[str, torch.Tensor], plan: MixPlan) -> None:
        """Mix ``label_distribution`` and ``attribute_labels`` of ``batch`` in place by ``plan``."""
        index = torch.as_tensor(plan.partner, dtype=torch.long)
        weight = torch.as_tensor(plan.label_weight, dtype=torch.float32)
        for key in ("label_distribution", "attribute_labels"):
            if key in batch:
                values = batch[key]
                w = weight.to(values.dtype).unsqueeze(1)
                batch[key] = w * values + (1 - w) * values[index]

    def model_inputs(self, plan: MixPlan) -> dict[str, torch.Tensor]:
        """For manifold mixup: what `ser_hf.modeling.mixup` needs to mix the pooled vectors."""
        if self.kind != "manifold":
            return {}
        return {
            "mix_index": torch.as_tensor(plan.partner, dtype=torch.long),
            "mix_lambda": torch.as_tensor(plan.signal_weight, dtype=torch.float32),
        }


__all__ = ["MIXING_TYPES", "MixPlan", "Mixer", "parse_mixing_config"]
