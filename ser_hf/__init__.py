"""ser-hf: speech emotion recognition in the wild with Hugging Face Trainer subclasses.

Importing the package registers the ser-hf models with the transformers Auto classes, so
``AutoModelForAudioClassification.from_pretrained(dir)`` and ``pipeline("audio-classification", dir)``
load saved checkpoints, and ``pipeline`` decodes files and resamples arrays without FFmpeg or
torchaudio (``ser_hf.pipelines``). Other names are imported on first use to keep ``import ser_hf`` light.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

from ser_hf.configuration import SERSpeechConfig, SERTextConfig  # noqa: E402
from ser_hf.modeling import SERModelForSpeech, SERModelForText, build_feature_extractor  # noqa: E402
from ser_hf.pipelines import register as _register_pipelines  # noqa: E402

_register_pipelines()  # pipeline("audio-classification") without FFmpeg/torchaudio (see ser_hf.pipelines)

_LAZY = {
    "SERTrainer": "ser_hf.trainer",
    "SERTrainingArguments": "ser_hf.training_args",
    "build_loss": "ser_hf.losses",
    "FocalLoss": "ser_hf.losses",
    "CCCLoss": "ser_hf.losses",
    "build_batch_sampler": "ser_hf.samplers",
    "load_corpus": "ser_hf.data.corpora",
    "SpeechCollator": "ser_hf.data.collators",
    "TextCollator": "ser_hf.data.collators",
    "SERTargets": "ser_hf.data.collators",
    "SERFusionModel": "ser_hf.modeling.fusion",
    "SERJointModel": "ser_hf.modeling.fusion",
    "extract_features": "ser_hf.features",
    "predict": "ser_hf.inference",
    "run_demo": "ser_hf.demo",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ser_hf' has no attribute {name!r}")


__all__ = ["SERModelForSpeech", "SERModelForText", "SERSpeechConfig", "SERTextConfig", "build_feature_extractor",
           *_LAZY, "__version__"]
