"""What every ser-hf model shares: heads for the task, the output type, attribute scaling and
a default loss, so speech, text and fusion models differ only in how they get a pooled vector."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration import SERConfig
from .heads import EmotionHead


@dataclass
class SEROutput(ModelOutput):
    """Outputs of a ser-hf model.

    Attributes:
        loss: default training loss (cross-entropy and/or 1 - mean CCC) when labels are given;
            `SERTrainer` replaces it with the configured loss.
        logits: categorical logits (B x K).
        attributes_normalized: attribute predictions on [0, 1] (what losses see).
        attributes: the same on the corpus scale (e.g. 1-7 for MSP-Podcast).
        pooled_output: the heads' input (what feature extraction caches).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    attributes_normalized: torch.Tensor | None = None
    attributes: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class SERPreTrainedModel(PreTrainedModel):
    """Base class: builds heads from the config and turns a pooled vector into `SEROutput`."""

    config_class = SERConfig
    base_model_prefix = "ser"
    supports_gradient_checkpointing = True

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def _build_heads(self, input_size: int) -> None:
        config = self.config
        make = lambda out: EmotionHead(  # noqa: E731
            input_size, config.head_hidden_size, out, config.activation, config.head_dropout
        )
        self.classifier = make(config.num_classes) if config.has_categorical else None
        self.regressor = make(len(config.attributes)) if config.has_attributes else None

    # Attribute scaling: heads work on [0, 1]; users see the corpus scale.
    def normalize_attributes(self, values: torch.Tensor) -> torch.Tensor:
        low, high = self.config.attribute_range
        return (values - low) / (high - low)

    def denormalize_attributes(self, values: torch.Tensor) -> torch.Tensor:
        low, high = self.config.attribute_range
        return values * (high - low) + low

    def _heads_forward(
        self,
        pooled: torch.Tensor,
        labels: torch.Tensor | None = None,
        attribute_labels: torch.Tensor | None = None,
        hidden_states=None,
    ) -> SEROutput:
        logits = self.classifier(pooled) if self.classifier is not None else None
        attributes_normalized = self.regressor(pooled) if self.regressor is not None else None
        attributes = self.denormalize_attributes(attributes_normalized) if attributes_normalized is not None else None
        loss = None
        if labels is not None or attribute_labels is not None:
            loss = self.default_loss(logits, attributes_normalized, labels, attribute_labels)
        return SEROutput(
            loss=loss,
            logits=logits,
            attributes_normalized=attributes_normalized,
            attributes=attributes,
            pooled_output=pooled,
            hidden_states=hidden_states,
        )

    def default_loss(self, logits, attributes_normalized, labels, attribute_labels) -> torch.Tensor:
        """Cross-entropy plus (1 - mean CCC): a sensible loss for plain `Trainer` use."""
        try:  # ser-hf's tested losses; a checkpoint loaded with trust_remote_code may not have ser-hf
            from ser_hf.losses import CCCLoss, CrossEntropyLoss
        except ImportError:
            return _plain_default_loss(logits, attributes_normalized, labels, self.normalize_attributes(attribute_labels)
                                       if attribute_labels is not None else None)

        total = None
        if logits is not None and labels is not None:
            total = CrossEntropyLoss()(logits, labels)
        if attributes_normalized is not None and attribute_labels is not None:
            term = CCCLoss()(attributes_normalized, self.normalize_attributes(attribute_labels))
            total = term if total is None else total + term
        return total

    # Auto classes a saved checkpoint maps to this class for ``trust_remote_code`` loading; the
    # task-specific one is registered with ``register_for_auto_class`` in ``ser_hf.modeling``.
    _extra_auto_classes: tuple[str, ...] = ("AutoModel",)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``PreTrainedModel.save_pretrained`` plus an ``auto_map`` for every Auto class of this model:
        transformers copies this module and its relative imports beside the weights, so the checkpoint
        loads with ``trust_remote_code=True`` where ser-hf is not installed."""
        if getattr(type(self), "_auto_class", None) is not None:
            module = type(self).__module__.rsplit(".", 1)[-1]
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            for auto_class in self._extra_auto_classes:
                auto_map[auto_class] = f"{module}.{type(self).__name__}"
            self.config.auto_map = auto_map
        # A pretrained encoder read from a local folder is recorded by its folder name only: the
        # checkpoint is self-contained, and a path on this machine means nothing elsewhere.
        backbone = getattr(self.config, "backbone_name_or_path", None)
        if not (backbone and os.path.exists(backbone)):
            return super().save_pretrained(save_directory, *args, **kwargs)
        self.config.backbone_name_or_path = os.path.basename(os.path.normpath(backbone))
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.config.backbone_name_or_path = backbone


    def _upload_modified_files(self, working_dir, repo_id, *args, **kwargs):
        """``push_to_hub`` hook: upload the ser-hf model card instead of transformers' generic draft."""
        try:  # absent when this code runs from a checkpoint loaded with trust_remote_code
            from ser_hf.hub import write_model_card
        except ImportError:
            pass
        else:
            write_model_card(working_dir, self.config, model_name=repo_id.split("/")[-1], repo_id=repo_id)
        return super()._upload_modified_files(working_dir, repo_id, *args, **kwargs)


def encoder_layer_classes(encoder: nn.Module) -> list[str]:
    """Class names of an encoder's transformer layers (its own ``_no_split_modules`` plus the classes
    found in its ``layers``/``layer`` stacks), so FSDP never splits a layer across units."""
    names = set(getattr(encoder, "_no_split_modules", None) or [])
    for name, child in encoder.named_modules():
        if isinstance(child, nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layers", "layer") and len(child):
            names.add(type(child[0]).__name__)
    return sorted(names)


def _plain_default_loss(logits, attributes_normalized, labels, targets) -> torch.Tensor | None:
    """The default loss in plain torch (CE over labelled rows + 1 - CCC per attribute over non-NaN rows)."""
    total = None
    if logits is not None and labels is not None:
        total = torch.nn.functional.cross_entropy(logits.float(), labels, ignore_index=-100)
    if attributes_normalized is not None and targets is not None:
        terms = []
        for d in range(targets.shape[-1]):
            valid = ~torch.isnan(targets[:, d])
            pred, gold = attributes_normalized[valid, d].float(), targets[valid, d].float()
            if pred.numel() < 1:
                continue
            pm, gm = pred.mean(), gold.mean()
            covariance = ((pred - pm) * (gold - gm)).mean()
            ccc = 2 * covariance / (pred.var(unbiased=False) + gold.var(unbiased=False) + (pm - gm) ** 2 + 1e-8)
            terms.append(1 - ccc)
        if terms:
            term = torch.stack(terms).mean()
            total = term if total is None else total + term
    return total


class SERBackboneModel(SERPreTrainedModel):
    """A SER model on a Hugging Face encoder: encoder -> (layer weighting) -> masked pooling -> heads.

    Subclasses build ``self.backbone`` and implement ``encode`` returning every hidden state the
    encoder gives and the validity mask of the frames/tokens.
    """

    def _build_pooling_and_heads(self, hidden_size: int, num_hidden_states: int) -> None:
        from .pooling import build_pooling

        config = self.config
        if config.layer_weighting == "weighted_sum":
            self.layer_weights = nn.Parameter(torch.zeros(num_hidden_states))
        else:
            self.layer_weights = None
        self.pooling = build_pooling(config.pooling, hidden_size, config.attention_pooling_hidden_size)
        self._build_heads(self.pooling.output_size)
        # What FSDP wraps as one unit (accelerate's TRANSFORMER_BASED_WRAP reads it): the encoder layers.
        self._no_split_modules = encoder_layer_classes(self.backbone)

    def combine_layers(self, outputs) -> torch.Tensor:
        if self.layer_weights is None:
            return outputs.last_hidden_state
        stacked = torch.stack(outputs.hidden_states, dim=0)
        weights = torch.softmax(self.layer_weights, dim=0).view(-1, 1, 1, 1)
        return (weights * stacked).sum(0)

    def pool(self, **inputs) -> torch.Tensor:
        """The pooled utterance vector (the heads' input) for a batch of model inputs."""
        hidden, mask = self.encode(**inputs)
        return self.pooling(hidden, mask)

    def backbone_parameters(self):
        return self.backbone.parameters()

    def load_backbone_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.backbone.load_state_dict(state_dict, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"pretrained backbone weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
