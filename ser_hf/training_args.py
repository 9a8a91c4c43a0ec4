"""`SERTrainingArguments`: the paper's training strategies as documented `TrainingArguments` fields."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from enum import Enum

from transformers import TrainingArguments


class CategoricalLoss(str, Enum):
    CE = "ce"
    WEIGHTED_CE = "weighted_ce"
    FOCAL = "focal"
    SOFT_CE = "soft_ce"


class AttributeLoss(str, Enum):
    CCC = "ccc"
    MSE = "mse"


class ClassWeighting(str, Enum):
    NONE = "none"
    INVERSE = "inverse"
    SQRT_INVERSE = "sqrt_inverse"
    EFFECTIVE_NUMBER = "effective_number"


class SamplerName(str, Enum):
    NONE = "none"
    UP = "up"
    DOWN = "down"
    WEIGHTED = "weighted"


class FinetuningPolicy(str, Enum):
    FULL = "full"
    FROZEN_BACKBONE = "frozen_backbone"
    FREEZE_FEATURE_ENCODER = "freeze_feature_encoder"
    FREEZE_BOTTOM_LAYERS = "freeze_bottom_layers"


def _to_enum(enum_cls: type[Enum], value, field_name: str) -> Enum:
    try:
        return enum_cls(value.value if isinstance(value, Enum) else value)
    except ValueError:
        valid = ", ".join(member.value for member in enum_cls)
        raise ValueError(f"{field_name}={value!r} is not valid; choose one of: {valid}") from None



@dataclass
class SERTrainingArguments(TrainingArguments):
    """Training arguments of `SERTrainer`.

    Every strategy the "Lessons Learnt" paper compares is one field here: the categorical loss
    (cross-entropy, class-weighted cross-entropy, focal), the class-balancing sampler (balanced
    up-/down-sampling, weighted random), the attribute loss (CCC) and separate learning rates for
    the pretrained backbone and the freshly initialised head.

    Gradient accumulation: categorical losses are per-utterance means, so dividing by the number of
    accumulation steps gives the same gradient as one big batch. The CCC loss is a *batch statistic*
    (means and variances over the batch), so it is computed per micro-batch and the micro-batch
    losses are averaged; with accumulation it is an average of per-micro-batch CCCs, not the CCC of
    the accumulated batch. Prefer larger ``per_device_train_batch_size`` over accumulation for CCC
    training (the IS2025 baseline uses 32).
    """

    hub_license: str | None = field(
        default=None,
        metadata={"help": "License id written into the model card (e.g. cc-by-4.0, apache-2.0); none: not stated."},
    )
    loss: str = field(
        default="ce",
        metadata={"help": "Categorical loss: ce, weighted_ce (class-weighted CE), focal or soft_ce (label distributions)."},
    )
    attribute_loss: str = field(default="ccc", metadata={"help": "Attribute loss: ccc (sum of w_d * (1 - CCC_d)) or mse."})
    focal_gamma: float = field(default=2.0, metadata={"help": "Focal loss focusing parameter gamma (0 = cross-entropy)."})
    class_weighting: str = field(
        default="none",
        metadata={
            "help": "Per-class weights from the training split: none, inverse (N/(K*n_c), the IS2025 baseline), "
            "sqrt_inverse or effective_number. Used by weighted_ce (inverse if none) and as focal alpha."
        },
    )
    label_smoothing_factor_ce: float = field(default=0.0, metadata={"help": "Label smoothing for ce/weighted_ce."})
    sampler: str = field(
        default="none",
        metadata={
            "help": "Training batch sampler: none (shuffle), up (every class oversampled to the largest), "
            "down (every class cut to the smallest, new subset each epoch) or weighted (random with replacement, "
            "inverse class frequency)."
        },
    )
    group_by_length: bool = field(
        default=True,
        metadata={
            "help": "Batch utterances of similar duration together (within shuffled mega-batches of the sampler's "
            "draw, so class balance is kept) and sort evaluation batches by length: almost no padding. Durations "
            "come from the cached header reads of ser_hf.data.durations (text: transcript length). Data without "
            "lengths (cached feature vectors) is batched as drawn."
        },
    )
    max_batch_seconds: float | None = field(
        default=None,
        metadata={
            "help": "Fill each training batch up to this many seconds of padded audio (longest crop x count) instead "
            "of per_device_train_batch_size utterances: big batches of short clips, small batches of long ones. "
            "Works with every sampler (class balance kept), distributed and resumable; needs audio durations."
        },
    )
    compile_bucket_seconds: float = field(
        default=0.5,
        metadata={
            "help": "With torch_compile: pad every audio batch's time axis up to a multiple of this many seconds "
            "(text: compile_bucket_tokens tokens), masked, so a run compiles at most max_audio_seconds / "
            "compile_bucket_seconds shapes per batch size instead of one per batch. 0 turns the padding off."
        },
    )
    compile_bucket_tokens: int = field(
        default=16, metadata={"help": "With torch_compile: pad text batches to a multiple of this many tokens (0: off)."}
    )
    torch_compile_dynamic: bool | None = field(
        default=None,
        metadata={
            "help": "torch.compile's `dynamic`: None lets torch mark a dimension dynamic once it changes (one extra "
            "compile); False compiles one static graph per bucketed shape (what CUDA graphs and max-autotune want); "
            "True traces dynamic shapes from the start."
        },
    )
    durations_cache: str | None = field(
        default=None,
        metadata={
            "help": "Parquet file caching audio headers (durations, and the validation probe's results) keyed by "
            "path, size and mtime (default: .ser_hf_durations.parquet in the audio files' common folder, or "
            "$SER_HF_CACHE/durations (~/.cache/ser_hf) if that folder is not writable)."
        },
    )
    attribute_loss_weights: list[float] | None = field(
        default=None, metadata={"help": "Weights of arousal, valence, dominance in the attribute loss (default equal)."}
    )
    categorical_loss_weight: float = field(default=1.0, metadata={"help": "Multi-task weight of the categorical loss."})
    attribute_loss_weight: float = field(default=1.0, metadata={"help": "Multi-task weight of the attribute loss."})
    backbone_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the pretrained encoder (default: learning_rate)."}
    )
    pooling_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of pooling and layer weights (default: head_learning_rate)."}
    )
    head_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the emotion heads (default: learning_rate)."}
    )
    max_audio_seconds: float = field(
        default=12.0, metadata={"help": "Training crop length in seconds (random crop; 12 s in the IS2025 baseline)."}
    )
    max_eval_audio_seconds: float | None = field(
        default=None, metadata={"help": "Evaluation crop length (from the start; default: max_audio_seconds)."}
    )
    # Fine-tuning policy and LoRA (applied by SERTrainer through ser_hf.finetuning before the optimizer exists).
    finetuning_policy: str | None = field(
        default=None,
        metadata={
            "help": "Which encoder weights train: full; frozen_backbone (pooling and heads only, the paper's fusion "
            "setting); freeze_feature_encoder (all but the CNN front end); freeze_bottom_layers (front end, embeddings "
            "and the lowest `freeze_bottom_layers` transformer layers frozen). Default: the model as built (speech "
            "models come with their CNN feature encoder frozen)."
        },
    )
    freeze_bottom_layers: int = field(
        default=0, metadata={"help": "Transformer layers kept frozen by finetuning_policy=freeze_bottom_layers."}
    )
    use_lora: bool = field(
        default=False,
        metadata={
            "help": "Train LoRA adapters (peft) on a frozen encoder, with pooling and heads fully trained; "
            "checkpoints then hold only the adapter, pooling and heads."
        },
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Encoder module names (or name suffixes) that get adapters. Default per encoder family: "
            "attention projections, except WavLM (feed-forward; see ser_hf.finetuning.DEFAULT_LORA_TARGETS)."
        },
    )
    # Strategies beyond the paper (issue 13): soft labels, augmentation, mixing.
    soft_labels: bool = field(
        default=False,
        metadata={
            "help": "Train on the annotators' label distribution (manifest label_distribution/label_votes, MSP-Podcast "
            "labels_detailed.csv) where a row has one: ce/weighted_ce/focal become their soft-target versions. "
            "Metrics still score the hard (majority) label; soft_ce/soft_kl to the distribution are reported beside. "
            "loss=soft_ce implies it."
        },
    )
    augment: dict | str | None = field(
        default=None,
        metadata={
            "help": "Training-only audio augmentation (ser_hf.data.augment): a preset (light, waveform, specaugment, "
            "waveform+specaugment) or a mapping, e.g. {noise: {p: 0.5, snr_db: [5, 20]}, speed: [0.9, 1.0, 1.1], "
            "reverb: {p: 0.3}, gain: {}, band_limit: {}, pitch: {}, specaugment: {}} (JSON on the command line). "
            "Every draw comes from (seed, epoch, example index); evaluation is never augmented."
        },
    )
    mixing: dict | str | None = field(
        default=None,
        metadata={
            "help": "Mixup family (ser_hf.data.mixing): input, manifold or overlap, or a mapping {type, p, alpha, "
            "level_db, label_weights: energy|equal}. Categorical targets become distributions (soft CE / focal, "
            "class weights apply); attributes mix linearly."
        },
    )
    average_last_epochs: int = field(
        default=0,
        metadata={
            "help": "Final model = mean of the weights at the end of the last k epochs (SWA on the decaying learning "
            "rate; ser_hf.weight_averaging); 0: the weights after the last step. Kept in checkpoints, so resuming is exact."
        },
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the collator needs the manifest's audio/label columns."}
    )

    def __post_init__(self):
        self.loss = _to_enum(CategoricalLoss, self.loss, "loss").value
        self.attribute_loss = _to_enum(AttributeLoss, self.attribute_loss, "attribute_loss").value
        self.class_weighting = _to_enum(ClassWeighting, self.class_weighting, "class_weighting").value
        self.sampler = _to_enum(SamplerName, self.sampler, "sampler").value
        if self.focal_gamma < 0:
            raise ValueError(f"focal_gamma must be >= 0, got {self.focal_gamma}")
        if self.attribute_loss_weights is not None and any(w < 0 for w in self.attribute_loss_weights):
            raise ValueError(f"attribute_loss_weights must be non-negative, got {self.attribute_loss_weights}")
        if self.max_batch_seconds is not None and not self.max_batch_seconds > 0:
            raise ValueError(f"max_batch_seconds must be positive, got {self.max_batch_seconds}")
        if self.compile_bucket_seconds < 0 or self.compile_bucket_tokens < 0:
            raise ValueError(
                f"compile_bucket_seconds and compile_bucket_tokens must be >= 0 (0: no bucket padding), got "
                f"{self.compile_bucket_seconds} and {self.compile_bucket_tokens}"
            )
        if self.max_audio_seconds <= 0:
            raise ValueError(f"max_audio_seconds must be positive, got {self.max_audio_seconds}")
        if self.average_last_epochs < 0:
            raise ValueError(f"average_last_epochs must be >= 0, got {self.average_last_epochs}")
        if self.average_last_epochs and self.load_best_model_at_end:
            raise ValueError("average_last_epochs and load_best_model_at_end both choose the final weights; set one")
        self._check_finetuning_fields()
        self._check_strategy_fields()
        if not self.use_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _has_accelerator():
            # `accelerate launch --multi_gpu` on a machine without GPUs starts CPU processes (gloo);
            # the Trainer only joins them into one run when told it is on CPU.
            from ser_hf.launch import warn_gpu_config_on_cpu

            warn_gpu_config_on_cpu()
            self.use_cpu = True
        # ddp_find_unused_parameters left unset is decided by SERTrainer from the model: off (every trainable
        # parameter gets a gradient each step) unless the backbone's layerdrop skips layers.
        super().__post_init__()

    def _check_strategy_fields(self) -> None:
        """Parse augment / mixing now, so a typo stops the run before any model is built."""
        from ser_hf.data.augment import parse_augment_config
        from ser_hf.data.mixing import parse_mixing_config

        for name in ("augment", "mixing"):
            value = getattr(self, name)
            if isinstance(value, str) and value.strip().startswith("{"):
                try:
                    setattr(self, name, json.loads(value))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{name}: not valid JSON ({exc.msg}): {value!r}") from None
        if parse_augment_config(self.augment) is None:
            self.augment = None
        if parse_mixing_config(self.mixing) is None:
            self.mixing = None
        if self.loss == "soft_ce":
            self.soft_labels = True
        if (self.soft_labels or self.mixing) and self.label_smoothing_factor_ce:
            raise ValueError("label_smoothing_factor_ce applies to hard targets; it cannot combine with soft_labels or mixing")

    @property
    def uses_soft_targets(self) -> bool:
        return bool(self.soft_labels or parse_mixing_config_cached(self.mixing))

    def _check_finetuning_fields(self) -> None:
        """Reject contradictory or silently ignored fine-tuning settings before anything is built."""
        if self.finetuning_policy is not None:
            self.finetuning_policy = _to_enum(FinetuningPolicy, self.finetuning_policy, "finetuning_policy").value
        bottom = self.finetuning_policy == FinetuningPolicy.FREEZE_BOTTOM_LAYERS.value
        if self.freeze_bottom_layers < 0 or (bottom and self.freeze_bottom_layers < 1):
            raise ValueError(f"freeze_bottom_layers must be >= 1 with that policy, got {self.freeze_bottom_layers}")
        if self.freeze_bottom_layers and not bottom:
            raise ValueError("freeze_bottom_layers is only used with finetuning_policy=freeze_bottom_layers")
        if self.use_lora and self.finetuning_policy not in (None, FinetuningPolicy.FROZEN_BACKBONE.value):
            raise ValueError(
                f"use_lora trains adapters on a frozen encoder; finetuning_policy={self.finetuning_policy!r} contradicts it "
                "(leave it unset)"
            )
        if not self.use_lora and self.lora_target_modules is not None:
            raise ValueError("lora_target_modules is set but use_lora is False")
        if self.lora_r < 1 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1:
            raise ValueError(
                f"LoRA needs lora_r >= 1, lora_alpha > 0 and 0 <= lora_dropout < 1; got r={self.lora_r}, "
                f"alpha={self.lora_alpha}, dropout={self.lora_dropout}"
            )


def parse_mixing_config_cached(value):
    from ser_hf.data.mixing import parse_mixing_config

    return parse_mixing_config(value)


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
