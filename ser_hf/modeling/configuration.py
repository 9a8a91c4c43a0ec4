"""Configurations of ser-hf models: backbone, pooling, head and task in one `PretrainedConfig`.

The backbone's own config is stored *inside* the SER config (``backbone_config``), so a saved
checkpoint rebuilds offline without contacting the Hub; ``backbone_name_or_path`` only records
where the pretrained weights came from.
"""
from __future__ import annotations

import math
from typing import Any

from transformers import AutoConfig, PretrainedConfig

TASKS = ("categorical", "attributes", "multitask")
POOLINGS = ("attentive_stats", "stats", "mean")
LAYER_WEIGHTINGS = ("last", "weighted_sum")
DEFAULT_ATTRIBUTES = ("arousal", "valence", "dominance")
INPUT_NORMALIZATIONS = ("none", "utterance", "speaker")  # kept equal to input_normalization.INPUT_NORMALIZATIONS


def _as_config_dict(config: PretrainedConfig | dict | None) -> dict | None:
    if config is None:
        return None
    data = dict(config) if isinstance(config, dict) else config.to_dict()
    data.pop("_name_or_path", None)  # where it was read from: a path on this machine, meaningless elsewhere
    return data


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(choices)}")


class SERConfig(PretrainedConfig):
    """Fields shared by the speech, text and fusion models.

    Args:
        task: ``"categorical"`` (K logits), ``"attributes"`` (arousal/valence/dominance regression)
            or ``"multitask"`` (both heads on one pooled vector).
        labels: class codes as they appear in the data (e.g. ``["A", "S", "H", ...]``).
        label_names: optional readable names per code; used for ``id2label`` so pipelines print them.
        attributes: names of the regression targets, in output order.
        attribute_range: (low, high) of the corpus scale. Heads predict on [0, 1]; outputs are mapped
            back to this scale so users see MSP-Podcast's 1-7 numbers.
        head_hidden_size, head_dropout, activation: the head is dropout -> linear -> LayerNorm ->
            activation -> dropout -> linear; the paper found Mish better than ReLU.
    """

    model_type = "ser"
    # A categorical config cannot be built without its labels; tells transformers (5.0's save path builds a
    # default instance to diff against) not to try.
    has_no_defaults_at_init = True

    def __init__(
        self,
        task: str = "categorical",
        labels: list[str] | None = None,
        label_names: dict[str, str] | None = None,
        attributes: list[str] | tuple[str, ...] = DEFAULT_ATTRIBUTES,
        attribute_range: tuple[float, float] | list[float] = (1.0, 7.0),
        head_hidden_size: int = 256,
        head_dropout: float = 0.1,
        activation: str = "mish",
        **kwargs: Any,
    ):
        _check_choice("task", task, TASKS)
        self.task = task
        self.labels = list(labels) if labels is not None else None
        self.label_names = dict(label_names) if label_names else None
        self.attributes = list(attributes)
        self.attribute_range = [float(attribute_range[0]), float(attribute_range[1])]
        if not self.attribute_range[0] < self.attribute_range[1]:
            raise ValueError(f"attribute_range must be (low, high) with low < high, got {attribute_range}")
        self.head_hidden_size = head_hidden_size
        self.head_dropout = head_dropout
        self.activation = activation
        if task in ("categorical", "multitask"):
            if not self.labels:
                raise ValueError(f"task={task!r} needs `labels` (the class codes)")
            names = self.label_names or {}
            kwargs["id2label"] = {i: names.get(code, code) for i, code in enumerate(self.labels)}
            kwargs["label2id"] = {v: k for k, v in kwargs["id2label"].items()}
        super().__init__(**kwargs)

    @property
    def num_classes(self) -> int:
        return len(self.labels) if self.labels else 0

    @property
    def has_categorical(self) -> bool:
        return self.task in ("categorical", "multitask")

    @property
    def has_attributes(self) -> bool:
        return self.task in ("attributes", "multitask")


class SERBackboneConfig(SERConfig):
    """A SER config whose model wraps a Hugging Face encoder (speech or text).

    Args:
        backbone_name_or_path: Hub id or local path of the pretrained encoder
            (``microsoft/wavlm-large``, ``roberta-large``, ...). Used to fetch weights once, by
            ``from_backbone``; afterwards the checkpoint is self-contained.
        backbone_config: the encoder's config (object or dict). Read from ``backbone_name_or_path``
            when omitted; pass one built in code to train a randomly initialised encoder.
        pooling: ``"attentive_stats"`` (mean and std under learned attention, 2*H), ``"stats"``
            (plain mean and std, 2*H) or ``"mean"``; all ignore padded frames/tokens.
        layer_weighting: ``"last"`` hidden state, or a learnable softmax-weighted sum of all layers.
    """

    default_pooling = "attentive_stats"

    def __init__(
        self,
        backbone_name_or_path: str | None = None,
        backbone_config: PretrainedConfig | dict | None = None,
        pooling: str | None = None,
        layer_weighting: str = "last",
        attention_pooling_hidden_size: int = 128,
        **kwargs: Any,
    ):
        if backbone_config is None and backbone_name_or_path is not None:
            backbone_config = AutoConfig.from_pretrained(backbone_name_or_path)
        self.backbone_name_or_path = backbone_name_or_path
        self.backbone_config = _as_config_dict(backbone_config)
        self.pooling = pooling or self.default_pooling
        _check_choice("pooling", self.pooling, POOLINGS)
        _check_choice("layer_weighting", layer_weighting, LAYER_WEIGHTINGS)
        self.layer_weighting = layer_weighting
        self.attention_pooling_hidden_size = attention_pooling_hidden_size
        super().__init__(**kwargs)

    def get_backbone_config(self) -> PretrainedConfig:
        """The encoder's config as a `PretrainedConfig` object."""
        if self.backbone_config is None:
            raise ValueError("SER config has neither backbone_config nor backbone_name_or_path")
        data = dict(self.backbone_config)
        return AutoConfig.for_model(data.pop("model_type"), **data)


class SERSpeechConfig(SERBackboneConfig):
    """Config of `SERModelForSpeech`: any HF audio encoder (WavLM, wav2vec2, HuBERT,
    data2vec-audio, Whisper's encoder).

    Args:
        freeze_feature_encoder: keep the CNN feature encoder (Whisper: its two input convolutions)
            frozen, the usual choice when fine-tuning self-supervised speech models.
        sampling_rate: rate the encoder expects; audio is resampled to it.
        max_audio_seconds: crop length (12 s in the IS2025 baseline). For Whisper it also sets the
            encoder's input window, so short crops are not padded to 30 s.
        input_normalization: ``"none"``, ``"utterance"`` or ``"speaker"``: log-mel features are
            normalised to zero mean and unit variance per mel bin, inside the model (so training,
            evaluation and exported models agree), over the utterance's own frames or over all the
            utterances of its speaker (statistics passed as ``speaker_mean`` / ``speaker_std``; see
            the data pipeline's speaker statistics; without them the training population's). Log-mel
            (Whisper-style) encoders only: the wav2vec2-family feature extractors already normalise
            each waveform.
    """

    model_type = "ser_speech"
    default_pooling = "attentive_stats"

    def __init__(
        self,
        freeze_feature_encoder: bool = True,
        sampling_rate: int = 16000,
        max_audio_seconds: float = 12.0,
        input_normalization: str = "none",
        **kwargs: Any,
    ):
        self.freeze_feature_encoder = freeze_feature_encoder
        _check_choice("input_normalization", input_normalization, INPUT_NORMALIZATIONS)
        self.input_normalization = input_normalization
        self.sampling_rate = sampling_rate
        self.max_audio_seconds = float(max_audio_seconds)
        super().__init__(**kwargs)
        if self.backbone_config is not None and self.backbone_config.get("model_type") == "whisper":
            # Whisper's encoder accepts exactly 2 * max_source_positions mel frames (10 ms hop):
            # shrink its window to the crop so a 3 s clip costs 3 s of compute, not 30.
            # The window is rounded up to whole seconds so the feature extractor serialises cleanly.
            positions = 50 * math.ceil(self.max_audio_seconds)
            self.backbone_config["max_source_positions"] = min(
                positions, self.backbone_config.get("max_source_positions", positions)
            )
        if self.input_normalization != "none" and not self.is_whisper:
            raise ValueError(
                f"input_normalization={self.input_normalization!r} normalises log-mel features (Whisper-style encoders); "
                "waveform encoders' feature extractors already normalise each utterance (do_normalize)"
            )

    @property
    def is_whisper(self) -> bool:
        return (self.backbone_config or {}).get("model_type") == "whisper"


class SERTextConfig(SERBackboneConfig):
    """Config of `SERModelForText`: any HF text encoder (RoBERTa by default in the recipes).

    Args:
        max_length: tokens kept per transcript.
    """

    model_type = "ser_text"
    default_pooling = "mean"

    def __init__(self, max_length: int = 128, **kwargs: Any):
        self.max_length = max_length
        super().__init__(**kwargs)

    def _get_generation_parameters(self) -> dict[str, Any]:
        # transformers 5 refuses to save a config with `max_length` (a generation setting elsewhere);
        # here it is the tokenizer's truncation length.
        parameters = super()._get_generation_parameters()
        parameters.pop("max_length", None)
        return parameters
