"""What every ser-hf model shares: heads for the task, the output type, attribute scaling and
a default loss, so speech, text and fusion models differ only in how they get a pooled vector."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from ser_hf.configuration import SERConfig
from ser_hf.modeling.heads import EmotionHead


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
        from ser_hf.losses import CCCLoss, CrossEntropyLoss

        total = None
        if logits is not None and labels is not None:
            total = CrossEntropyLoss()(logits, labels)
        if attributes_normalized is not None and attribute_labels is not None:
            term = CCCLoss()(attributes_normalized, self.normalize_attributes(attribute_labels))
            total = term if total is None else total + term
        return total


class SERBackboneModel(SERPreTrainedModel):
    """A SER model on a Hugging Face encoder: encoder -> (layer weighting) -> masked pooling -> heads.

    Subclasses build ``self.backbone`` and implement ``encode`` returning every hidden state the
    encoder gives and the validity mask of the frames/tokens.
    """

    def _build_pooling_and_heads(self, hidden_size: int, num_hidden_states: int) -> None:
        from ser_hf.modeling.pooling import build_pooling

        config = self.config
        if config.layer_weighting == "weighted_sum":
            self.layer_weights = nn.Parameter(torch.zeros(num_hidden_states))
        else:
            self.layer_weights = None
        self.pooling = build_pooling(config.pooling, hidden_size, config.attention_pooling_hidden_size)
        self._build_heads(self.pooling.output_size)

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
