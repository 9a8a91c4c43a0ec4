"""ser-hf models, registered with the transformers Auto classes on import."""
from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification, AutoModelForSequenceClassification

from ser_hf.modeling.configuration import SERSpeechConfig, SERTextConfig
from ser_hf.modeling.base import SEROutput, SERPreTrainedModel
from ser_hf.modeling.fusion import SERFusionConfig, SERFusionModel, SERJointConfig, SERJointModel
from ser_hf.modeling.heads import ACTIVATIONS, EmotionHead, get_activation
from ser_hf.modeling.pooling import AttentiveStatisticsPooling, MeanPooling
from ser_hf.modeling.speech import SERModelForSpeech, build_feature_extractor
from ser_hf.modeling.text import SERModelForText


def _register() -> None:
    for config_class, model_class, auto_class in (
        (SERSpeechConfig, SERModelForSpeech, AutoModelForAudioClassification),
        (SERTextConfig, SERModelForText, AutoModelForSequenceClassification),
    ):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        auto_class.register(config_class, model_class, exist_ok=True)
    for config_class, model_class in ((SERFusionConfig, SERFusionModel), (SERJointConfig, SERJointModel)):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)


_register()


def _register_for_remote_code() -> None:
    """Checkpoints carry an ``auto_map`` and the model code, so ``trust_remote_code=True`` loads them
    where ser-hf is not installed (see ``SERPreTrainedModel.save_pretrained``)."""
    from ser_hf.modeling.configuration import SERBackboneConfig, SERConfig

    for config_class in (SERConfig, SERBackboneConfig, SERSpeechConfig, SERTextConfig, SERFusionConfig, SERJointConfig):
        config_class.register_for_auto_class("AutoConfig")
    SERModelForSpeech.register_for_auto_class("AutoModelForAudioClassification")
    SERModelForText.register_for_auto_class("AutoModelForSequenceClassification")
    SERFusionModel.register_for_auto_class("AutoModel")
    SERJointModel.register_for_auto_class("AutoModel")


_register_for_remote_code()

__all__ = [
    "ACTIVATIONS",
    "AttentiveStatisticsPooling",
    "EmotionHead",
    "MeanPooling",
    "SERFusionConfig",
    "SERFusionModel",
    "SERJointConfig",
    "SERJointModel",
    "SERModelForSpeech",
    "SERModelForText",
    "SEROutput",
    "SERPreTrainedModel",
    "build_feature_extractor",
    "get_activation",
]
