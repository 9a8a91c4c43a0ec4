"""`SERTrainer`: the Hugging Face `Trainer` with the paper's losses and class-balanced sampling."""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import EvalPrediction

from ser_hf.data.collators import IGNORE_INDEX, SERTargets
from ser_hf.data.randomness import EpochIndexedDataset, EpochTaggedBatchSampler
from ser_hf.losses import build_loss
from ser_hf.modeling.parameters import count_parameters  # noqa: F401  (kept importable from here)
from ser_hf.modeling.parameters import parameter_part as _parameter_part
from ser_hf.samplers import build_batch_sampler
from ser_hf.training_args import SERTrainingArguments

logger = logging.getLogger(__name__)
STAGING_FOLDER = ".tmp-final-model"


def compute_ser_metrics(config, eval_prediction: EvalPrediction, label_names: list[str] | None = None) -> dict[str, float]:
    """Metrics over the *whole* evaluation set (the Trainer gathers every batch first).

    Categorical: macro-F1 (the IS2025 task-1 primary), micro-F1, accuracy, UAR. Attributes: CCC per
    attribute on the corpus scale and their mean (task 2). With annotator distributions among the
    references (``soft_labels``): ``soft_ce`` / ``soft_kl`` of the predicted probabilities to them, beside
    the hard-label metrics (which score the majority label).
    """
    from ser_hf.metrics import compute_metric  # the local evaluate modules

    predictions = _as_tuple(eval_prediction.predictions)
    references = _as_tuple(eval_prediction.label_ids)
    names = _output_names(config)
    predictions = dict(zip(names, predictions))
    references = dict(zip(label_names or _label_names(config), references))
    metrics: dict[str, float] = {}
    if config.has_categorical:
        labels = np.asarray(references["labels"])
        keep = labels != IGNORE_INDEX
        predicted = np.asarray(predictions["logits"]).argmax(-1)
        metrics.update(
            compute_metric(
                "ser_classification", predictions=predicted[keep], references=labels[keep],
                labels=list(range(config.num_classes)),
            )
        )
        if "label_distribution" in references:
            from scipy.special import softmax

            from ser_hf.data.soft_labels import soft_label_metrics

            probabilities = softmax(np.asarray(predictions["logits"], dtype=np.float64), axis=-1)
            metrics.update(soft_label_metrics(probabilities, np.asarray(references["label_distribution"])))
    if config.has_attributes:
        metrics.update(
            compute_metric(
                "ser_ccc", predictions=np.asarray(predictions["attributes"]),
                references=np.asarray(references["attribute_labels"]), attribute_names=list(config.attributes),
            )
        )
    return metrics


def _as_tuple(value) -> tuple:
    return value if isinstance(value, (tuple, list)) else (value,)


def _output_names(config) -> list[str]:
    return (["logits"] if config.has_categorical else []) + (["attributes"] if config.has_attributes else [])


def _label_names(config) -> list[str]:
    return (["labels"] if config.has_categorical else []) + (["attribute_labels"] if config.has_attributes else [])


def _batch_rows(inputs, label_names) -> int:
    for name in (*label_names, "input_values", "input_features", "input_ids"):
        value = inputs.get(name)
        if value is not None and hasattr(value, "shape"):
            return int(value.shape[0])
    return 0


def default_metric_for_best_model(config) -> str:
    return "macro_f1" if config.has_categorical else "ccc_mean"


class _ReseedSamplerCallback(TrainerCallback):
    """Give the batch sampler the epoch number, so every epoch draws a new, reproducible order."""

    def __init__(self, trainer: "SERTrainer"):
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        sampler = self.trainer._train_batch_sampler
        if sampler is not None:
            sampler.set_epoch(int(math.floor(state.epoch or 0)))


class SERTrainer(Trainer):
    """Trainer for ser-hf models.

    * ``compute_loss`` applies the loss chosen in `SERTrainingArguments` (CE, class-weighted CE,
      focal, soft CE; CCC or MSE for attributes; a weighted sum for multi-task models). Class weights
      come from the training split's label counts.
    * ``get_train_dataloader`` draws batches with the chosen balancing sampler (balanced up/down,
      weighted, or plain shuffling), distributed-aware and reseeded every epoch.
    * The optimizer has separate learning rates for backbone, pooling and heads.
    * Evaluation metrics (macro-F1, UAR, CCC, ...) are computed over the whole eval set, and the best
      checkpoint is selected by macro-F1 (categorical) or mean CCC (attributes) unless told otherwise.

    ``train_dataset``/``eval_dataset`` are manifest datasets (rows in the ser-hf schema); the
    ``data_collator`` (e.g. `SpeechCollator`) decodes them. It must have ``train_mode()``, which gives
    the random-crop variant used for training.
    """

    # Set by `ser_hf.experiment.train` when its validation pass has just stat-ed (or read) every audio
    # file through the header cache in this launch: length grouping then takes the cached entries
    # without stat-ing 270k files a second time.
    audio_headers_verified: bool = False
    # The header cache that validation used (its table covers every split); None: the default place.
    audio_header_cache: str | None = None

    def __init__(self, model=None, args: SERTrainingArguments | None = None, *pargs, **kwargs):
        if args is None:
            raise ValueError("SERTrainer needs SERTrainingArguments")
        if not isinstance(args, SERTrainingArguments):
            raise TypeError(f"SERTrainer needs SERTrainingArguments, got {type(args).__name__}")
        from ser_hf.finetuning import describe_trainable_parameters, prepare_model_for_training

        model = prepare_model_for_training(model, args)  # policy / LoRA before the optimizer sees any parameter
        _checkpointing_with_layerdrop(model, args)
        config = model.config
        soft_eval = bool(args.soft_labels and config.has_categorical)
        if args.label_names is None:
            args.label_names = _label_names(config) + (["label_distribution"] if soft_eval else [])
        if soft_eval and hasattr(kwargs.get("data_collator"), "targets"):
            import dataclasses

            collator = kwargs["data_collator"]
            kwargs["data_collator"] = dataclasses.replace(collator, targets=dataclasses.replace(collator.targets, soft="annotators"))
        if args.metric_for_best_model is None and (args.load_best_model_at_end or kwargs.get("eval_dataset") is not None):
            args.metric_for_best_model = default_metric_for_best_model(config)
            args.greater_is_better = True
        if kwargs.get("compute_metrics") is None:
            names = list(args.label_names)
            kwargs["compute_metrics"] = lambda prediction: compute_ser_metrics(config, prediction, names)
        super().__init__(model, args, *pargs, **kwargs)
        # Our losses are per-batch means; let the Trainer divide them by the accumulation steps.
        self.model_accepts_loss_kwargs = False
        self._train_batch_sampler = None
        self.class_counts = self._class_counts()
        self.categorical_loss, self.attribute_loss = self._build_losses()
        self.add_callback(_ReseedSamplerCallback(self))
        self.weight_averaging = None
        if args.average_last_epochs:
            from ser_hf.weight_averaging import EpochWeightAveraging

            self.weight_averaging = EpochWeightAveraging(args.average_last_epochs)
            self.add_callback(self.weight_averaging)
        from ser_hf.resume import FAULT_ENV, FaultInjectionCallback, PreemptionCallback

        if os.environ.get(FAULT_ENV):
            self.add_callback(FaultInjectionCallback(self, os.environ[FAULT_ENV]))
        self.preemption = PreemptionCallback(self)
        self.add_callback(self.preemption)
        logger.info(describe_trainable_parameters(self.model))

    # ------------------------------------------------------------------ resume
    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        """`Trainer.train`, with ``resume_from_checkpoint`` also accepting ``"last"`` (the newest
        complete checkpoint in ``output_dir``; a fresh start if there is none yet).

        Raises `ser_hf.resume.TrainingPreempted` when SIGTERM stopped the run after saving a checkpoint. The
        returned metrics add ``train_cpu_seconds`` (CPU time of this process, every thread counted).
        """
        from ser_hf.resume import TrainingPreempted, resolve_resume_checkpoint

        checkpoint = resolve_resume_checkpoint(resume_from_checkpoint, self.args.output_dir)
        if self.weight_averaging is not None and checkpoint:
            self.weight_averaging.load(checkpoint)
        cpu_start = time.process_time()
        output = super().train(checkpoint, *args, **kwargs)
        # CPU time of this process (all its threads): what a training budget on a shared machine is counted in.
        output.metrics["train_cpu_seconds"] = round(time.process_time() - cpu_start, 2)
        if self.preemption.stopped_at is not None:
            saved = os.path.join(self.args.output_dir, f"checkpoint-{self.preemption.stopped_at}")
            raise TrainingPreempted(saved, self.preemption.received or "SIGTERM")
        return output

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """Save the final model atomically: written to ``<output_dir>/.tmp-final-model`` and each file
        then renamed into ``output_dir`` (weights first, ``config.json`` last), so a later step never
        reads a half-written weights file. A staging folder left by a killed run is cleared first.
        Checkpoints (``_internal_call``) are saved as the Trainer does; `ser_hf.resume` skips
        incomplete ones."""
        if _internal_call:  # a checkpoint: its weight snapshots go in before the Trainer writes trainer_state.json
            if self.weight_averaging is not None and self.args.should_save:
                self.weight_averaging.save(output_dir or self.args.output_dir)
            return super().save_model(output_dir, _internal_call)
        from ser_hf.io import publish_folder

        output_dir = output_dir or self.args.output_dir
        staging = os.path.join(output_dir, STAGING_FOLDER)
        if self.args.should_save and os.path.isdir(staging):
            import shutil

            shutil.rmtree(staging)
        self.accelerator.wait_for_everyone()
        super().save_model(staging, _internal_call)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            publish_folder(staging, output_dir)
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------ losses
    def _train_label_ids(self) -> np.ndarray | None:
        config = self.model.config
        if not config.has_categorical or self.train_dataset is None:
            return None
        key = (id(self.train_dataset), len(self.train_dataset))
        cached = getattr(self, "_label_ids_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        from ser_hf.data.schema import column_values

        targets = SERTargets.for_config(config)
        codes = column_values(self.train_dataset, "label")
        ids = np.array([targets.label_id({"label": code, "id": i}) for i, code in enumerate(codes)], dtype=np.int64)
        self._label_ids_cache = (key, ids)
        return ids

    def _class_counts(self) -> list[int] | None:
        ids = self._train_label_ids()
        if ids is None:
            return None
        ids = ids[ids != IGNORE_INDEX]
        return np.bincount(ids, minlength=self.model.config.num_classes).tolist()

    def _build_losses(self):
        args, config = self.args, self.model.config
        categorical = attribute = None
        if config.has_categorical:
            uses_weights = args.class_weighting != "none" or args.loss == "weighted_ce"
            if uses_weights and self.class_counts is not None:
                empty = [config.labels[i] for i, n in enumerate(self.class_counts) if n == 0]
                if empty:
                    raise ValueError(f"class weighting needs every class in the training split; no examples of {empty}")
            options = {}
            if args.loss == "focal":
                options["focal_gamma"] = args.focal_gamma
                options["focal_alpha_from_weights"] = args.class_weighting != "none"
            elif args.loss in ("ce", "weighted_ce"):
                options["label_smoothing"] = args.label_smoothing_factor_ce
            categorical = build_loss(
                args.loss,
                num_classes=config.num_classes,
                class_counts=self.class_counts if uses_weights else None,
                class_weighting=args.class_weighting,
                **options,
            )
        if config.has_attributes:
            attribute = build_loss(args.attribute_loss, attribute_weights=args.attribute_loss_weights)
        self.soft_categorical_loss = None
        if config.has_categorical and args.uses_soft_targets:
            from ser_hf.losses import build_soft_target_loss

            uses_weights = args.class_weighting != "none" or args.loss == "weighted_ce"
            self.soft_categorical_loss = build_soft_target_loss(
                args.loss,
                class_counts=self.class_counts if uses_weights else None,
                class_weighting=args.class_weighting,
                focal_gamma=args.focal_gamma,
            )
        return categorical, attribute

    def compute_loss(self, model, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch=None):
        labels = inputs.pop("labels", None)
        attribute_labels = inputs.pop("attribute_labels", None)
        distributions = inputs.pop("label_distribution", None)
        mix_index, mix_lambda = inputs.pop("mix_index", None), inputs.pop("mix_lambda", None)
        if mix_index is not None:
            from ser_hf.modeling.mixup import manifold_mixup

            with manifold_mixup(self.accelerator.unwrap_model(model), mix_index, mix_lambda):
                outputs = model(**inputs)
        else:
            outputs = model(**inputs)
        loss = self._loss(model, outputs, labels, attribute_labels, distributions)
        if return_outputs:
            kept = {"loss": loss}
            if outputs.logits is not None:
                kept["logits"] = outputs.logits
            if outputs.attributes is not None:
                kept["attributes"] = outputs.attributes
            return loss, kept
        return loss

    def _loss(self, model, outputs, labels, attribute_labels, distributions=None) -> torch.Tensor:
        loss = None
        # Losses in float32 whatever the autocast dtype (CCC's batch statistics need it); no host-device sync.
        with torch.autocast(device_type=self.accelerator.device.type, enabled=False):
            if distributions is not None and getattr(self, "soft_categorical_loss", None) is not None:
                loss = self.args.categorical_loss_weight * self.soft_categorical_loss(outputs.logits, distributions)
            elif self.categorical_loss is not None and labels is not None:
                loss = self.args.categorical_loss_weight * self.categorical_loss(outputs.logits, labels)
            if self.attribute_loss is not None and attribute_labels is not None:
                target = self.accelerator.unwrap_model(model).normalize_attributes(attribute_labels)
                term = self.args.attribute_loss_weight * self.attribute_loss(outputs.attributes_normalized, target)
                loss = term if loss is None else loss + term
        if loss is None:
            raise ValueError("batch has no labels for this model's task")
        return loss

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """The stock estimate (6 x input elements x parameters) with the parameter count taken once.

        Why: the stock version walks every module each step to count parameters, about a millisecond
        per step, as much as a whole step of a fusion head.
        """
        main_input = getattr(self.model, "main_input_name", "input_ids")
        if main_input not in inputs or not hasattr(self.model, "num_parameters"):
            return 0
        if getattr(self, "_parameter_count", None) is None:
            self._parameter_count = self.model.num_parameters(exclude_embeddings=True)
        return 6 * inputs[main_input].numel() * self._parameter_count

    # ------------------------------------------------------------------ evaluation of long utterances
    def evaluation_loop(self, *args, **kwargs):
        self._windowed_rows = 0
        self._evaluated_rows = 0
        output = super().evaluation_loop(*args, **kwargs)
        output = _restore_dataset_order(output, args[0] if args else kwargs.get("dataloader"))
        if self._windowed_rows:
            window = getattr(self.data_collator, "max_seconds", None)
            logger.info(
                "%d of %d evaluated utterances are longer than the %s s evaluation window: each was scored whole, "
                "as overlapping windows whose class probabilities and attributes were averaged (weighted by length)",
                self._windowed_rows, self._evaluated_rows, window,
            )
        return output

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Batches with ``window_rows`` (see `SpeechCollator.window_long_inputs`) hold several windows
        of a long utterance: the windows run through the model in chunks and each utterance's outputs
        are the length-weighted mean of its windows' (probabilities for classes, then logged back to
        logits; attributes directly), as ``ser-hf predict`` does for a file."""
        rows = inputs.get("window_rows")
        if rows is None:
            self._evaluated_rows = getattr(self, "_evaluated_rows", 0) + _batch_rows(inputs, self.label_names)
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        inputs = self._prepare_inputs(inputs)
        rows, weights = inputs.pop("window_rows"), inputs.pop("window_weights")
        targets = {name: inputs.pop(name) for name in ("labels", "attribute_labels", "label_distribution") if name in inputs}
        num_rows = int(rows.max().item()) + 1
        self._windowed_rows = getattr(self, "_windowed_rows", 0) + int((torch.bincount(rows, minlength=num_rows) > 1).sum())
        self._evaluated_rows = getattr(self, "_evaluated_rows", 0) + num_rows
        chunk = max(1, self.args.per_device_eval_batch_size)
        with torch.no_grad():
            parts = [
                model(**{k: v[i : i + chunk] for k, v in inputs.items()}) for i in range(0, len(rows), chunk)
            ]
            mix = torch.zeros(num_rows, len(rows), device=weights.device, dtype=torch.float32)
            mix[rows, torch.arange(len(rows), device=rows.device)] = weights
            mix = mix / mix.sum(dim=1, keepdim=True)

            def pooled(name):
                values = [getattr(p, name) for p in parts]
                return None if values[0] is None else mix @ torch.cat(values).float()

            logits = pooled("logits")
            if logits is not None:
                probabilities = mix @ torch.softmax(torch.cat([p.logits for p in parts]).float(), dim=-1)
                logits = torch.log(probabilities.clamp_min(torch.finfo(torch.float32).tiny))
            from ser_hf.modeling.base import SEROutput

            outputs = SEROutput(
                logits=logits, attributes=pooled("attributes"), attributes_normalized=pooled("attributes_normalized")
            )
            has_labels = bool(targets) and all(targets.get(name) is not None for name in self.label_names)
            loss = (
                self._loss(
                    model, outputs, targets.get("labels"), targets.get("attribute_labels"), targets.get("label_distribution")
                ).detach()
                if has_labels else None
            )
        if prediction_loss_only:
            return loss, None, None
        ignore = set(ignore_keys or [])
        predicted = tuple(v for k, v in (("logits", outputs.logits), ("attributes", outputs.attributes))
                          if v is not None and k not in ignore)
        labels = tuple(targets.get(name) for name in self.label_names) if has_labels else None
        if labels is not None and len(labels) == 1:
            labels = labels[0]
        return loss, (predicted[0] if len(predicted) == 1 else predicted), labels

    # ------------------------------------------------------------------ data
    def _train_lengths(self) -> list[float] | None:
        if not self.args.group_by_length and self.args.max_batch_seconds is None:
            return None
        lengths = self.dataset_lengths(self.train_dataset, cap_seconds=self.args.max_audio_seconds)
        if lengths is None and self.args.max_batch_seconds is not None:
            raise ValueError("max_batch_seconds needs audio durations: the training data has no audio or duration column")
        return lengths

    def dataset_lengths(self, dataset, cap_seconds: float | None = None) -> list[float] | None:
        """Per-row lengths for batching: audio seconds (cached header reads, capped at the crop), else
        transcript characters; None for data without lengths (e.g. cached feature vectors)."""
        from ser_hf.data.schema import column_values

        columns = dataset.column_names
        if "duration" in columns:
            seconds = np.asarray(column_values(dataset, "duration"), dtype=np.float64)
        elif "audio" in columns:
            from ser_hf.data.durations import read_durations

            import datasets

            if isinstance(dataset.features.get("audio"), datasets.Audio):  # never decode a whole column to measure it
                dataset = dataset.select_columns(["audio"]).cast_column("audio", datasets.Audio(decode=False))
            paths = [value.get("path") if isinstance(value, dict) else value for value in column_values(dataset, "audio")]
            # Every value a path, and a spread of them files (the reads below name any other missing file).
            sample = paths[:: max(1, len(paths) // 32)]
            if not all(isinstance(p, str) and p for p in paths) or not all(os.path.isfile(p) for p in sample):
                logger.info("length grouping: the audio column holds no file paths (e.g. embedded bytes); batches as drawn")
                return None
            # One process per node reads (and caches) the durations; the others wait and load its table.
            with self.args.main_process_first(local=True, desc="reading audio durations"):
                seconds = read_durations(
                    paths,
                    cache_path=self.args.durations_cache or self.audio_header_cache,
                    progress=not self.args.disable_tqdm and self.args.local_process_index == 0,
                    trust_cache=self.args.local_process_index != 0 or self.audio_headers_verified,
                )
        elif "transcript" in columns:
            return [float(len(t or "")) for t in column_values(dataset, "transcript")]
        else:
            return None
        if cap_seconds:
            seconds = np.minimum(seconds, cap_seconds)
        return seconds.tolist()

    def build_train_batch_sampler(self):
        args = self.args
        labels = self._train_label_ids()
        if args.sampler != "none":
            if labels is None:
                raise ValueError(f"sampler={args.sampler!r} balances classes; this model's task has no classes")
            unlabelled = np.flatnonzero(labels == IGNORE_INDEX)
            if len(unlabelled):
                raise ValueError(
                    f"sampler={args.sampler!r} needs a class for every training row; {len(unlabelled)} rows have none "
                    f"(first: {[self.train_dataset[int(i)]['id'] for i in unlabelled[:5]]}). Filter them or use sampler=none."
                )
        label_list = labels if labels is not None else [None] * len(self.train_dataset)
        lengths = self._train_lengths()
        lengths = np.asarray(lengths, dtype=np.float64) if lengths is not None else None
        return build_batch_sampler(
            args.sampler,
            label_list,
            self._train_batch_size,
            lengths=lengths,
            seed=args.seed,
            num_replicas=args.world_size,
            rank=args.process_index,
            drop_last=args.dataloader_drop_last,
            group_by_length=args.group_by_length and lengths is not None,
            max_batch_seconds=args.max_batch_seconds,
        )

    def get_train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise ValueError("SERTrainer: training requires a train_dataset")
        # Rows reach the collator tagged with (epoch, index) so their random draws are pure functions
        # of them (ser_hf.data.randomness): resumed runs and skipped batches need no replay.
        sampler = EpochTaggedBatchSampler(self.build_train_batch_sampler())
        self._train_batch_sampler = sampler
        collator = self._bucketed(self._training_collator())
        loader = DataLoader(
            EpochIndexedDataset(self.train_dataset),
            batch_sampler=sampler,
            collate_fn=collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            persistent_workers=self.args.dataloader_persistent_workers and self.args.dataloader_num_workers > 0,
            prefetch_factor=self.args.dataloader_prefetch_factor if self.args.dataloader_num_workers > 0 else None,
        )
        prepared = self.accelerator.prepare(loader)
        # The sampler already gives each process its own share; undo accelerate's re-sharding.
        shard = getattr(prepared, "batch_sampler", None)
        if shard is not None and getattr(shard, "batch_sampler", None) is sampler:
            shard.num_processes = 1
            shard.process_index = 0
            shard.even_batches = False  # would pad a short last batch with repeated rows
            # Batches of any size are this rank's own: with a batch_size set, accelerate holds back every
            # batch shorter than it (a seconds budget makes most of them so) and yields only the last one.
            shard.batch_size = None
        return prepared

    def get_eval_dataloader(self, eval_dataset=None) -> DataLoader:
        with self._bucketed_data_collator():
            return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset) -> DataLoader:
        with self._bucketed_data_collator():
            return super().get_test_dataloader(test_dataset)

    def _bucketed(self, collator):
        """With ``torch_compile``: ``collator`` padding every batch to a length bucket (a bounded set of
        shapes to compile, see `ser_hf.data.shape_buckets`); otherwise ``collator`` itself."""
        if not self.args.torch_compile or collator is None:
            return collator
        from ser_hf.data.shape_buckets import BucketPaddingCollator

        tokenizer = getattr(collator, "tokenizer", None)
        return BucketPaddingCollator.wrap(
            collator,
            bucket_seconds=self.args.compile_bucket_seconds,
            bucket_tokens=self.args.compile_bucket_tokens,
            sampling_rate=getattr(collator, "sampling_rate", 16000),
            pad_token_id=getattr(tokenizer, "pad_token_id", None) or 0,
        )

    @contextlib.contextmanager
    def _bucketed_data_collator(self):
        """``self.data_collator`` bucketed while the Trainer builds an evaluation dataloader from it."""
        original = self.data_collator
        self.data_collator = self._bucketed(original)
        try:
            yield
        finally:
            self.data_collator = original

    def _build_accelerator_args(self, **kwargs) -> dict[str, Any]:
        """The Trainer's accelerator arguments, with ``torch_compile_dynamic`` passed to torch.compile and
        dynamo's recompile limit raised to the number of bucketed shapes (past it, dynamo would silently
        fall back to eager for every new shape)."""
        args = super()._build_accelerator_args(**kwargs)
        plugin = args.get("dynamo_plugin")
        if self.args.torch_compile and plugin is not None:
            if self.args.torch_compile_dynamic is not None:
                plugin.dynamic = self.args.torch_compile_dynamic
            from ser_hf.data.shape_buckets import shape_count_bound

            shapes = shape_count_bound(self.args.max_audio_seconds, self.args.compile_bucket_seconds)
            if shapes:
                import torch._dynamo

                # Training and evaluation (grad mode is guarded on), each with a full and a short last batch.
                needed = 4 * shapes
                if torch._dynamo.config.recompile_limit < needed:
                    torch._dynamo.config.recompile_limit = needed
                if torch._dynamo.config.accumulated_recompile_limit < needed:
                    torch._dynamo.config.accumulated_recompile_limit = needed
        return args

    def _get_eval_sampler(self, eval_dataset):
        """Evaluation in length order (longest first: padding-free batches, and an out-of-memory
        shows at once); `evaluation_loop` puts the outputs back in dataset order."""
        if not self.args.group_by_length or eval_dataset is None or not hasattr(eval_dataset, "column_names"):
            return super()._get_eval_sampler(eval_dataset)
        if getattr(self.data_collator, "window_long_inputs", False):
            return self._dataset_order_sampler(eval_dataset)  # windowed batches keep the dataset order
        lengths = self.dataset_lengths(eval_dataset)
        if lengths is None:
            return self._dataset_order_sampler(eval_dataset)
        return LengthSortedSampler(np.argsort(-np.asarray(lengths), kind="stable"))

    def _dataset_order_sampler(self, eval_dataset):
        """Evaluation in dataset order even with group_by_length on (transformers 5.0's own eval sampler
        would group by an `input_values` length the manifest rows do not have)."""
        if self.args.world_size <= 1:
            return torch.utils.data.SequentialSampler(eval_dataset)
        return super()._get_eval_sampler(eval_dataset)

    def _training_collator(self):
        """The training variant of the collator: random crops, augmentation, mixing and soft targets."""
        import dataclasses

        args = self.args
        collator = self.data_collator.train_mode(seed=args.seed) if hasattr(self.data_collator, "train_mode") else self.data_collator
        if not dataclasses.is_dataclass(collator) or not hasattr(collator, "targets"):
            if args.augment or args.mixing or args.soft_labels:
                raise ValueError("augment / mixing / soft_labels need a ser-hf collator (SpeechCollator or TextCollator)")
            return collator
        from ser_hf.data.augment import Augmenter
        from ser_hf.data.mixing import Mixer

        changes = {}
        if args.uses_soft_targets and collator.targets.labels:
            changes["targets"] = dataclasses.replace(collator.targets, soft="annotators" if args.soft_labels else "onehot")
        mixer = Mixer.from_config(args.mixing, seed=args.seed)
        if mixer is not None:
            changes["mixer"] = mixer
        if args.augment:
            if not hasattr(collator, "augmenter"):
                raise ValueError("augment applies to speech models (audio); this collator has no audio")
            changes["augmenter"] = Augmenter.from_config(args.augment, sampling_rate=collator.sampling_rate, seed=args.seed)
        return dataclasses.replace(collator, **changes) if changes else collator

    # ------------------------------------------------------------------ hub
    def create_model_card(self, **kwargs) -> None:
        """The ser-hf card (labels/attributes, strategies, results; see `ser_hf.hub`), which
        `push_to_hub` uploads as README.md in place of the generic Trainer draft."""
        if self.is_world_process_zero():
            from ser_hf.hub import write_trainer_model_card

            if kwargs.get("license") is None:
                kwargs["license"] = self.args.hub_license
            write_trainer_model_card(self, **kwargs)

    # ------------------------------------------------------------------ optimizer
    def create_optimizer(self, model=None):
        """AdamW (or the configured optimizer) with backbone / pooling / head learning rates."""
        if self.optimizer is not None:
            return self.optimizer
        model = self.model if model is None else model
        args = self.args
        head_lr = args.head_learning_rate or args.learning_rate
        rates = {
            "backbone": args.backbone_learning_rate or args.learning_rate,
            "pooling": args.pooling_learning_rate or head_lr,
            "head": head_lr,
        }
        decay_names = set(self.get_decay_parameter_names(model))
        groups: dict[tuple[str, bool], list] = {}
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            part = _parameter_part(name)
            groups.setdefault((part, name in decay_names), []).append(parameter)
        param_groups = [
            {"params": params, "lr": rates[part], "weight_decay": args.weight_decay if decay else 0.0}
            for (part, decay), params in groups.items()
        ]
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(args, model)
        optimizer_kwargs.pop("lr", None)
        self.optimizer = optimizer_cls(param_groups, lr=args.learning_rate, **optimizer_kwargs)
        return self.optimizer


def _checkpointing_with_layerdrop(model: torch.nn.Module, args: SERTrainingArguments) -> None:
    """Let activation checkpointing and layerdrop (WavLM, wav2vec2, HuBERT) train together under DDP.

    The Trainer turns DDP's unused-parameter detection off whenever checkpointing is on (it breaks
    *reentrant* checkpointing), but layerdrop skips random layers on each rank, so DDP then fails with
    "Expected to have finished reduction in the prior iteration". Non-reentrant checkpointing (the
    default here) works with the detection, so it is switched back on -- unless the user chose.
    """
    layerdrop = max((getattr(getattr(m, "config", None), "layerdrop", 0.0) or 0.0 for m in model.modules()), default=0.0)
    if args.ddp_find_unused_parameters is not None:
        return  # the user chose
    # Every trainable parameter gets a gradient each step unless layerdrop skips layers.
    args.ddp_find_unused_parameters = layerdrop > 0
    # transformers renamed gradient_checkpointing to activation_checkpointing; read either.
    checkpointing = getattr(args, "activation_checkpointing", getattr(args, "gradient_checkpointing", False))
    if layerdrop <= 0 or not checkpointing:
        return
    options = dict(getattr(args, "activation_checkpointing_kwargs", getattr(args, "gradient_checkpointing_kwargs", None)) or {})
    if options.get("use_reentrant", False):
        raise ValueError(
            f"activation checkpointing with use_reentrant=True cannot run with layerdrop={layerdrop} under DDP; "
            "use use_reentrant=False (the default) or set the backbone's layerdrop to 0"
        )
    kwargs_field = "activation_checkpointing_kwargs" if hasattr(args, "activation_checkpointing_kwargs") else "gradient_checkpointing_kwargs"
    setattr(args, kwargs_field, {**options, "use_reentrant": False})
    logger.info("activation checkpointing with layerdrop %.2f: DDP unused-parameter detection on", layerdrop)


class LengthSortedSampler(torch.utils.data.Sampler):
    """A fixed order of dataset indices (evaluation sorted by length); ``order`` undoes it afterwards."""

    def __init__(self, order: np.ndarray):
        self.order = np.asarray(order, dtype=np.int64)

    def __iter__(self):
        return iter(self.order.tolist())

    def __len__(self) -> int:
        return len(self.order)


def _length_order_of(dataloader) -> np.ndarray | None:
    """The `LengthSortedSampler` order behind a (possibly accelerate-wrapped) evaluation dataloader."""
    candidates = [dataloader, getattr(dataloader, "base_dataloader", None)]
    for loader in candidates:
        if loader is None:
            continue
        for sampler in (
            getattr(loader, "sampler", None),
            getattr(getattr(loader, "batch_sampler", None), "sampler", None),
            getattr(getattr(getattr(loader, "batch_sampler", None), "batch_sampler", None), "sampler", None),
        ):
            if isinstance(sampler, LengthSortedSampler):
                return sampler.order
    return None



def _restore_dataset_order(output, dataloader):
    """Predictions of a length-sorted evaluation put back in dataset order (metrics do not depend on it)."""
    order = _length_order_of(dataloader) if dataloader is not None else None
    if order is None or output.num_samples != len(order):
        return output
    inverse = np.argsort(order, kind="stable")

    def restore(value):
        if isinstance(value, (tuple, list)):
            return type(value)(restore(v) for v in value)
        return value[inverse] if isinstance(value, np.ndarray) and len(value) == len(order) else value

    return output._replace(predictions=restore(output.predictions), label_ids=restore(output.label_ids))
