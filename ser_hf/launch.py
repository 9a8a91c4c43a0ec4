"""Say so when an accelerate config cannot be honoured: a GPU config on a machine without GPUs runs
on CPU (gloo) and its bf16/fp16 mixed precision is dropped; silently doing either hides why a run is
slow or why its numbers differ from a GPU run."""
from __future__ import annotations

import logging
import os
import warnings

logger = logging.getLogger(__name__)

_WARNED: set[str] = set()


def _warn(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, stacklevel=3)
        logger.warning(message)


def warn_gpu_config_on_cpu() -> None:
    """Warn (once per process) that a GPU launch config runs on CPU, and that its mixed precision is dropped."""
    processes = os.environ.get("WORLD_SIZE", "1")
    _warn(
        "cpu",
        f"the accelerate config asks for GPUs but none is visible: its {processes} processes train on CPU over gloo "
        "(use accelerate_configs/cpu.yaml, or --num_processes, to choose the CPU layout yourself)",
    )
    precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if precision in ("bf16", "fp16"):
        _warn(
            "precision",
            f"the accelerate config asks for {precision} mixed precision, which is dropped on CPU: training runs in fp32",
        )
