"""Resuming interrupted training: which checkpoint to resume, and stopping cleanly on SIGTERM.

Why: a run on a preemptible queue is killed at any moment (``kill -9``) or warned first (SIGTERM,
what Slurm, Kubernetes and cloud spot instances send). The Trainer's checkpoints already hold the
model, optimizer, scheduler, step and every process's RNG state; the sampler order is a function of
``(seed, epoch)`` and each example's random draws of ``(seed, epoch, index)`` (see
`ser_hf.data.randomness`), so resuming from a checkpoint replays nothing and ends with the weights
an uninterrupted run would have had.
"""
from __future__ import annotations

import logging
import os
import re
import signal

from transformers import TrainerCallback

from ser_hf.errors import ConfigError

logger = logging.getLogger(__name__)

# EX_TEMPFAIL (sysexits.h): "temporary failure, the user is invited to retry" — the run stopped on
# SIGTERM after saving a checkpoint; rerun it with ``--resume_from_checkpoint last``.
PREEMPTED_EXIT_CODE = 75
LAST = ("last", "true", "latest")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Test hook: "SIGKILL@N" kills every process right after checkpoint N is saved; "SIGTERM@N" sends
# SIGTERM to each process ("SIGTERM@N:R": to rank R only) at the end of step N. Used by
# tests/test_resume.py and tests/test_msp_recipe.py to interrupt a real run.
FAULT_ENV = "SER_HF_TEST_SIGNAL"


class TrainingPreempted(RuntimeError):
    """Training stopped on a signal after saving ``checkpoint``; resume from it to continue exactly."""

    exit_code = PREEMPTED_EXIT_CODE

    def __init__(self, checkpoint: str | None, signal_name: str = "SIGTERM"):
        self.checkpoint = checkpoint
        self.signal_name = signal_name
        super().__init__(
            f"training stopped on {signal_name} after saving {checkpoint}; "
            "rerun the same command with --resume_from_checkpoint last to continue exactly where it stopped"
        )


def is_complete_checkpoint(path: str) -> bool:
    """Whether a checkpoint folder was written to the end (a ``kill -9`` mid-save leaves one that is not).

    The Trainer writes ``trainer_state.json`` after the weights, optimizer, scheduler and its own
    RNG state; under several processes every process's ``rng_state_<rank>.pth`` must be there too.
    """
    if not os.path.isfile(os.path.join(path, "trainer_state.json")):
        return False
    if not any(os.path.isfile(os.path.join(path, name)) for name in ("model.safetensors", "adapter_model.safetensors",
                                                                        "model.safetensors.index.json", "pytorch_model.bin")):
        return False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        return all(os.path.isfile(os.path.join(path, f"rng_state_{rank}.pth")) for rank in range(world))
    return True


def last_checkpoint(output_dir: str) -> str | None:
    """The newest complete ``checkpoint-N`` in ``output_dir`` (None if there is none)."""
    if not os.path.isdir(output_dir):
        return None
    found = []
    for name in os.listdir(output_dir):
        match = _CHECKPOINT.match(name)
        path = os.path.join(output_dir, name)
        if match and os.path.isdir(path):
            if is_complete_checkpoint(path):
                found.append((int(match.group(1)), path))
            else:
                logger.warning("ignoring incomplete checkpoint %s (interrupted while it was being saved)", path)
    return max(found)[1] if found else None


def resolve_resume_checkpoint(value, output_dir: str) -> str | None:
    """``--resume_from_checkpoint`` as a folder: PATH as given, ``last``/``true`` the newest in output_dir.

    ``last`` with no checkpoint yet starts from scratch (logged), so one job script serves the first
    launch and every requeue. An explicit PATH must be a complete checkpoint (else `ConfigError`).
    """
    if value is None or value is False:
        return None
    text = str(value).strip()
    if text.lower() in ("", "none", "false", "no"):
        return None
    if value is True or text.lower() in LAST:
        found = last_checkpoint(output_dir)
        if found is None:
            logger.info("resume_from_checkpoint=%s: no checkpoint in %s yet; training from the start", text, output_dir)
        else:
            logger.info("resuming from %s", found)
        return found
    if not os.path.isdir(text):
        raise ConfigError(f"resume_from_checkpoint: {text} is not a folder (give a checkpoint-N folder, or 'last')")
    if not is_complete_checkpoint(text):
        raise ConfigError(
            f"resume_from_checkpoint: {text} is not a complete checkpoint (no trainer_state.json, weights or "
            "per-process RNG state; it was probably interrupted while being saved). Use an earlier one or 'last'."
        )
    return text


class PreemptionCallback(TrainerCallback):
    """On SIGTERM (or SIGUSR1), save a checkpoint at the end of the current step and stop training.

    The handler only records the signal; the decision is taken at the next optimizer step, agreed
    by all processes (an all-reduce, so a signal seen by one rank stops every rank at the same
    step), and the Trainer then writes a normal checkpoint. `SERTrainer.train` raises
    `TrainingPreempted` afterwards; ``ser-hf train`` turns it into exit status 75.
    """

    signals = ("SIGTERM", "SIGUSR1")

    def __init__(self, trainer):
        self.trainer = trainer
        self.received: str | None = None
        self.stopped_at: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name
        logger.warning("received %s: saving a checkpoint at the end of this step, then stopping", self.received)

    def on_train_begin(self, args, state, control, **kwargs):
        self.received, self.stopped_at = None, None
        import threading

        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        for name in self.signals:
            sig = getattr(signal, name, None)
            if sig is not None:
                self._previous[sig] = signal.signal(sig, self._handle)

    def on_train_end(self, args, state, control, **kwargs):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def _agreed(self, args) -> bool:
        stop = self.received is not None
        if args.world_size > 1:
            import torch

            flag = torch.tensor([1.0 if stop else 0.0], device=args.device)
            stop = bool(self.trainer.accelerator.reduce(flag, reduction="sum").item() > 0)
        return stop

    def on_step_end(self, args, state, control, **kwargs):
        if self._agreed(args):
            self.received = self.received or "SIGTERM"
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True


class FaultInjectionCallback(TrainerCallback):
    """Test hook (``SER_HF_TEST_SIGNAL``): interrupt a real run at a chosen step, as a scheduler would."""

    def __init__(self, trainer, spec: str):
        name, _, rest = spec.partition("@")
        step, _, rank = rest.partition(":")
        if name not in ("SIGKILL", "SIGTERM") or not step.isdigit() or (rank and not rank.isdigit()):
            raise ValueError(f"{FAULT_ENV}={spec!r}: expected SIGKILL@STEP or SIGTERM@STEP[:RANK]")
        self.trainer, self.signal_name, self.step = trainer, name, int(step)
        self.rank = int(rank) if rank else None  # SIGTERM to one process only (the others must follow)

    def on_step_end(self, args, state, control, **kwargs):
        if self.signal_name == "SIGTERM" and state.global_step == self.step:
            if self.rank is None or self.rank == args.process_index:
                os.kill(os.getpid(), signal.SIGTERM)

    def on_save(self, args, state, control, **kwargs):
        if self.signal_name == "SIGKILL" and state.global_step == self.step:
            self.trainer.accelerator.wait_for_everyone()  # every process has written its part
            os.kill(os.getpid(), signal.SIGKILL)


__all__ = [
    "FAULT_ENV",
    "PREEMPTED_EXIT_CODE",
    "FaultInjectionCallback",
    "PreemptionCallback",
    "TrainingPreempted",
    "is_complete_checkpoint",
    "last_checkpoint",
    "resolve_resume_checkpoint",
]
