"""`SERModelForText`: any Hugging Face text encoder on transcripts + masked pooling + emotion heads."""
from __future__ import annotations

import torch
from transformers import AutoModel

from .configuration import SERTextConfig
from .base import SERBackboneModel, SEROutput

# BERT-like encoders build an unused pooler layer unless told not to.
_POOLER_MODELS = {"bert", "roberta", "xlm-roberta", "camembert"}


class SERModelForText(SERBackboneModel):
    """Text emotion model. Mean pooling covers real tokens only (``attention_mask``), unlike an
    average over the padded sequence, so a transcript's vector does not depend on its batch."""

    config_class = SERTextConfig
    main_input_name = "input_ids"

    def __init__(self, config: SERTextConfig):
        super().__init__(config)
        backbone_config = config.get_backbone_config()
        extra = {"add_pooling_layer": False} if backbone_config.model_type in _POOLER_MODELS else {}
        self.backbone = AutoModel.from_config(backbone_config, **extra)
        backbone_config = self.backbone.config
        self._build_pooling_and_heads(backbone_config.hidden_size, backbone_config.num_hidden_layers + 1)
        self.post_init()

    @classmethod
    def from_backbone(cls, backbone_name_or_path: str, **config_kwargs) -> "SERModelForText":
        """A new SER model on a *pretrained* text encoder, e.g. ``from_backbone("roberta-large", labels=[...])``."""
        config = SERTextConfig(backbone_name_or_path=backbone_name_or_path, **config_kwargs)
        model = cls(config)
        state = AutoModel.from_pretrained(backbone_name_or_path).state_dict()
        state = {k: v for k, v in state.items() if not k.startswith("pooler.")}
        model.load_backbone_weights(state)
        return model

    def freeze_feature_encoder(self) -> None:
        """Text encoders have no convolutional front end; kept for a uniform fine-tuning API."""

    def encode(self, input_ids=None, attention_mask=None, token_type_ids=None):
        kwargs = {"attention_mask": attention_mask, "output_hidden_states": self.layer_weights is not None}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        outputs = self.backbone(input_ids, **kwargs)
        hidden = self.combine_layers(outputs)
        mask = attention_mask.bool() if attention_mask is not None else torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
        return hidden, mask

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        attribute_labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SEROutput:
        hidden, mask = self.encode(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return self._heads_forward(self.pooling(hidden, mask), labels, attribute_labels)

