"""Fusion of speech and text: a head on cached features, and the end-to-end joint alternative.

The paper's best valence came from *late* fusion: fine-tune a speech model and a text model
separately, cache each one's pooled vector (its head input, see ``ser_hf.features``), and train
only a small head (Mish) on their concatenation. `SERFusionModel` is that head. `SERJointModel`
trains both encoders and one fused head end to end, so the two strategies can be compared on the
same data with the same losses, samplers and metrics.

Block order is fixed: **audio first, then text**, then any other named blocks in the order given.
A concatenated ``features`` tensor must follow that order (`join_feature_datasets` writes it so).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .configuration import SERConfig, SERSpeechConfig, SERTextConfig
from .base import SEROutput, SERPreTrainedModel

FUSION_ORDER = ("audio", "text")


def ordered_blocks(input_sizes: Mapping[str, int] | Sequence[Sequence[Any]]) -> dict[str, int]:
    """``{name: size}`` in the fixed block order: audio, text, then other names as given."""
    pairs = list(input_sizes.items()) if isinstance(input_sizes, Mapping) else [tuple(p) for p in input_sizes]
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"fusion block names must be unique, got {names}")
    if not pairs:
        raise ValueError("a fusion model needs at least one feature block in input_sizes")
    sizes = dict(pairs)
    for name, size in sizes.items():
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ValueError(f"fusion block {name!r}: size must be a positive int, got {size!r}")
    order = [n for n in FUSION_ORDER if n in sizes] + [n for n in names if n not in FUSION_ORDER]
    return {name: sizes[name] for name in order}


class FusionInput(nn.Module):
    """Per-block LayerNorm and dropout, then concatenation in block order.

    Why per block: the audio and text vectors come from different encoders with different scales;
    normalising each block keeps one modality from dominating the head's first layer.
    """

    def __init__(self, input_sizes: Mapping[str, int], layer_norm: bool, dropout: float):
        super().__init__()
        self.input_sizes = dict(input_sizes)
        self.norms = nn.ModuleDict(
            {name: nn.LayerNorm(size) if layer_norm else nn.Identity() for name, size in self.input_sizes.items()}
        )
        self.dropout = nn.Dropout(dropout)
        self.output_size = sum(self.input_sizes.values())

    def split(self, features: torch.Tensor | Mapping[str, torch.Tensor] | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per-block tensors from a concatenated B x D tensor, a {name: tensor} mapping or a list in block order."""
        names = list(self.input_sizes)
        if isinstance(features, torch.Tensor):
            if features.dim() != 2 or features.shape[-1] != self.output_size:
                raise ValueError(
                    f"features must be B x {self.output_size} (blocks {self.input_sizes}, in that order), "
                    f"got shape {tuple(features.shape)}"
                )
            return list(torch.split(features, list(self.input_sizes.values()), dim=-1))
        if isinstance(features, Mapping):
            missing = [n for n in names if n not in features]
            extra = [n for n in features if n not in self.input_sizes]
            if missing or extra:
                raise ValueError(f"feature blocks {list(features)} do not match the model's {names}")
            blocks = [features[n] for n in names]
        else:
            blocks = list(features)
            if len(blocks) != len(names):
                raise ValueError(f"got {len(blocks)} feature blocks, the model has {len(names)}: {names}")
        for name, block in zip(names, blocks):
            if block.dim() != 2 or block.shape[-1] != self.input_sizes[name]:
                raise ValueError(f"feature block {name!r} must be B x {self.input_sizes[name]}, got {tuple(block.shape)}")
        return blocks

    def forward(self, features) -> torch.Tensor:
        blocks = self.split(features)
        return self.dropout(torch.cat([self.norms[n](b) for n, b in zip(self.input_sizes, blocks)], dim=-1))


class SERFusionConfig(SERConfig):
    """Config of `SERFusionModel`: the head's task, labels and activation plus the feature blocks.

    Args:
        input_sizes: feature width per named block, e.g. ``{"audio": 2048, "text": 1024}`` (a dict or
            a list of ``[name, size]`` pairs). Stored in the fixed block order (audio, text, others).
        input_layer_norm: LayerNorm each block before concatenating (see `FusionInput`).
        input_dropout: dropout on the concatenated features.
    """

    model_type = "ser_fusion"

    def __init__(
        self,
        input_sizes: Mapping[str, int] | Sequence[Sequence[Any]] | None = None,
        input_layer_norm: bool = True,
        input_dropout: float = 0.0,
        **kwargs: Any,
    ):
        # Stored as [name, size] pairs: JSON keeps them, and the order is explicit in config.json.
        self.input_sizes = [[n, s] for n, s in ordered_blocks(input_sizes).items()] if input_sizes else None
        self.input_layer_norm = input_layer_norm
        self.input_dropout = input_dropout
        super().__init__(**kwargs)

    @property
    def blocks(self) -> dict[str, int]:
        if not self.input_sizes:
            raise ValueError("SERFusionConfig needs input_sizes (feature width per block)")
        return {name: int(size) for name, size in self.input_sizes}


class SERFusionModel(SERPreTrainedModel):
    """A head on cached, concatenated features (late fusion; backbones are not part of the model).

    ``forward(features, labels=None, attribute_labels=None)``: ``features`` is B x D in block order,
    or a mapping/list of per-block tensors. Returns `SEROutput` like the speech and text models.
    """

    config_class = SERFusionConfig
    main_input_name = "features"

    def __init__(self, config: SERFusionConfig):
        super().__init__(config)
        self.fusion = FusionInput(config.blocks, config.input_layer_norm, config.input_dropout)
        self._build_heads(self.fusion.output_size)
        self.post_init()

    def forward(self, features=None, labels=None, attribute_labels=None, **kwargs) -> SEROutput:
        if features is None:
            raise ValueError(f"SERFusionModel takes `features` (blocks {self.config.blocks})")
        return self._heads_forward(self.fusion(features), labels, attribute_labels)


# ------------------------------------------------------------------------------------------ joint
class SERJointConfig(SERConfig):
    """Config of `SERJointModel`: a speech and a text SER config (encoder + pooling) and one fused head.

    Args:
        speech_config / text_config: `SERSpeechConfig` / `SERTextConfig` (objects or dicts); only their
            encoder and pooling are used, the fused head follows *this* config's task and labels.
        input_layer_norm, input_dropout: as in `SERFusionConfig`.
    """

    model_type = "ser_joint"

    def __init__(
        self,
        speech_config: SERSpeechConfig | dict | None = None,
        text_config: SERTextConfig | dict | None = None,
        input_layer_norm: bool = True,
        input_dropout: float = 0.0,
        **kwargs: Any,
    ):
        self.speech_config = speech_config.to_dict() if isinstance(speech_config, SERSpeechConfig) else speech_config
        self.text_config = text_config.to_dict() if isinstance(text_config, SERTextConfig) else text_config
        self.input_layer_norm = input_layer_norm
        self.input_dropout = input_dropout
        super().__init__(**kwargs)

    def part_config(self, which: str) -> SERSpeechConfig | SERTextConfig:
        data = getattr(self, f"{which}_config")
        if data is None:
            raise ValueError(f"SERJointConfig needs {which}_config")
        config_class = SERSpeechConfig if which == "speech" else SERTextConfig
        dropped = ("model_type", "transformers_version", "architectures", "id2label", "label2id", "num_labels")
        data = {k: v for k, v in data.items() if k not in dropped}
        # The parts' own heads are never used: build them as cheap attribute heads and drop them.
        data.update(task="attributes", labels=None, label_names=None)
        return config_class(**data)


class SERJointModel(SERPreTrainedModel):
    """Speech and text encoders trained jointly with one head on their concatenated pooled vectors.

    Inputs: the speech collator's ``input_values``/``input_features`` + ``attention_mask`` and the text
    collator's ``input_ids`` + ``text_attention_mask`` (+ ``token_type_ids``); `JointCollator` builds them.
    Parameter names keep ``backbone``/``pooling``, so `SERTrainer`'s learning-rate groups apply.
    """

    config_class = SERJointConfig
    main_input_name = "input_values"

    def __init__(self, config: SERJointConfig):
        super().__init__(config)
        from .speech import SERModelForSpeech
        from .text import SERModelForText

        self.speech = SERModelForSpeech(config.part_config("speech"))
        self.text = SERModelForText(config.part_config("text"))
        for part in (self.speech, self.text):
            part.classifier = part.regressor = None  # only encoder + pooling are used
        self._no_split_modules = sorted({*self.speech._no_split_modules, *self.text._no_split_modules})
        sizes = {"audio": self.speech.pooling.output_size, "text": self.text.pooling.output_size}
        self.fusion = FusionInput(sizes, config.input_layer_norm, config.input_dropout)
        self._build_heads(self.fusion.output_size)
        self.post_init()

    @classmethod
    def from_parts(cls, speech_model, text_model, **config_kwargs) -> SERJointModel:
        """A joint model initialised from two SER models (e.g. `from_backbone` ones, or fine-tuned ones).

        Encoders and pooling are copied; the fused head is new. ``config_kwargs`` set the task/labels/head.
        """
        config = SERJointConfig(speech_config=speech_model.config, text_config=text_model.config, **config_kwargs)
        model = cls(config)
        for mine, theirs in ((model.speech, speech_model), (model.text, text_model)):
            state = {k: v for k, v in theirs.state_dict().items() if not k.startswith(("classifier.", "regressor."))}
            mine.load_state_dict(state, strict=True)  # the speech part froze its front end if its config says so
        return model

    def pool(self, input_values=None, input_features=None, attention_mask=None, input_ids=None,
             text_attention_mask=None, token_type_ids=None) -> torch.Tensor:
        audio = self.speech.pool(input_values=input_values, input_features=input_features, attention_mask=attention_mask)
        text = self.text.pool(input_ids=input_ids, attention_mask=text_attention_mask, token_type_ids=token_type_ids)
        return self.fusion({"audio": audio, "text": text})

    def forward(
        self,
        input_values=None,
        input_features=None,
        attention_mask=None,
        input_ids=None,
        text_attention_mask=None,
        token_type_ids=None,
        labels=None,
        attribute_labels=None,
        **kwargs,
    ) -> SEROutput:
        pooled = self.pool(input_values, input_features, attention_mask, input_ids, text_attention_mask, token_type_ids)
        return self._heads_forward(pooled, labels, attribute_labels)


@dataclass
class JointCollator:
    """Speech collator + text collator for `SERJointModel`: the text mask is renamed ``text_attention_mask``."""

    speech_collator: Any
    text_collator: Any

    def train_mode(self, seed: int | None = None) -> JointCollator:
        clone = copy.copy(self)
        clone.speech_collator = self.speech_collator.train_mode(seed)
        clone.text_collator = self.text_collator.train_mode(seed)
        return clone

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.speech_collator(rows)
        text = self.text_collator(rows)
        for key in ("labels", "attribute_labels"):
            text.pop(key, None)
        text["text_attention_mask"] = text.pop("attention_mask")
        batch.update(text)
        return batch


__all__ = [
    "FUSION_ORDER",
    "FusionInput",
    "JointCollator",
    "SERFusionConfig",
    "SERFusionModel",
    "SERJointConfig",
    "SERJointModel",
    "ordered_blocks",
]
