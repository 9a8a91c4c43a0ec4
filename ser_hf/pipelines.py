"""``pipeline("audio-classification")`` that decodes without FFmpeg and resamples without torchaudio.

transformers' stock pipeline reads a file path or bytes with FFmpeg and resamples an
``{"array", "sampling_rate"}`` input with torchaudio. This subclass turns every such input into a
mono float32 array at the feature extractor's rate with ``ser_hf.data.audio`` (soundfile + soxr)
and hands that to the stock code, so a 22.05 kHz array is resampled, never misread. A bare numpy
array carries no rate and is taken to be at the model's rate, as in transformers; pass
``{"array": wave, "sampling_rate": rate}`` otherwise.

``import ser_hf`` installs it as the implementation of the ``audio-classification`` task (the
registry entry keeps transformers' model classes and default), so ``pipeline("audio-classification",
model=dir)`` needs no extra flag. Other audio models benefit too: the behaviour is a superset.
"""
from __future__ import annotations

import os

import numpy as np
from transformers import AudioClassificationPipeline

from ser_hf.data.audio import load_audio


class SERAudioClassificationPipeline(AudioClassificationPipeline):
    def preprocess(self, inputs):
        rate = self.feature_extractor.sampling_rate
        if isinstance(inputs, (str, os.PathLike)) and not str(inputs).startswith(("http://", "https://")):
            inputs = load_audio(inputs, rate)
        elif isinstance(inputs, (bytes, bytearray)):
            inputs = load_audio({"bytes": bytes(inputs)}, rate)
        elif isinstance(inputs, dict):
            source = dict(inputs)
            if "raw" in source:
                source["array"] = source.pop("raw")
            if "array" in source:
                array = source["array"]
                source["array"] = array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)
                if "sampling_rate" not in source:
                    raise ValueError('an {"array": ...} input needs its "sampling_rate"')
            inputs = load_audio(source, rate)
        elif hasattr(inputs, "get_all_samples"):  # a torchcodec AudioDecoder (decoded datasets column)
            inputs = load_audio(inputs, rate)
        return super().preprocess(inputs)


def register() -> None:
    """Make `SERAudioClassificationPipeline` the ``audio-classification`` implementation."""
    from transformers.pipelines import PIPELINE_REGISTRY

    PIPELINE_REGISTRY.supported_tasks["audio-classification"]["impl"] = SERAudioClassificationPipeline


__all__ = ["SERAudioClassificationPipeline", "register"]
