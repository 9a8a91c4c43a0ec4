"""Configurations of ser-hf models (defined in ``ser_hf.modeling.configuration``, next to the model
code, so a saved checkpoint can ship that code with relative imports only; see ``ser_hf.modeling``)."""
from ser_hf.modeling.configuration import (  # noqa: F401
    DEFAULT_ATTRIBUTES,
    LAYER_WEIGHTINGS,
    POOLINGS,
    TASKS,
    SERBackboneConfig,
    SERConfig,
    SERSpeechConfig,
    SERTextConfig,
)

__all__ = ["SERBackboneConfig", "SERConfig", "SERSpeechConfig", "SERTextConfig"]
