"""From arguments to a trained, evaluated model: the steps `ser-hf train` and `ser-hf evaluate` share.

Kept as plain functions so Python users, recipes and the ablation runner call the same code as the CLI.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any

import datasets

from ser_hf.arguments import DataArguments, ModelArguments
from ser_hf.configuration import SERSpeechConfig, SERTextConfig
from ser_hf.data.collators import SERTargets, SpeechCollator, TextCollator
from ser_hf.data.corpora import get_corpus_spec
from ser_hf.data.protocols import shared_label_spec
from ser_hf.errors import ConfigError
from ser_hf.io import write_json_atomic
from ser_hf.preflight import (
    DROPPED_ROWS_FILE,
    check_evaluation_data,
    check_run_data,
    load_run_corpus,
    write_dropped_rows,
)
from ser_hf.training_args import SERTrainingArguments

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- data
def load_data(data_args: DataArguments) -> datasets.DatasetDict:
    """The corpus as a DatasetDict in the ser-hf schema (``label_map`` and ``cv_folds`` applied; bad
    lines raise one `DataError` naming them all)."""
    return load_run_corpus(data_args)


def select_split(corpus: datasets.DatasetDict, name: str | None) -> datasets.Dataset | None:
    """A split by name; ``a+b`` concatenates splits; ``None``/``"none"`` gives None."""
    if name is None or name.lower() == "none":
        return None
    parts = []
    for part in name.split("+"):
        if part not in corpus:
            raise ConfigError(f"split {part!r} not in corpus (it has {list(corpus)})")
        parts.append(corpus[part])
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def corpus_labels(
    data_args: DataArguments, corpus: datasets.DatasetDict | None = None
) -> tuple[list[str] | None, dict | None, tuple[float, float] | None]:
    """(class codes, readable names, attribute range) for the configured corpus.

    A ``--dataset_name`` input takes its classes from ``--labels``, else the label column's
    ClassLabel names (in the dataset's order), else the sorted labels found in ``corpus``.
    """
    if data_args.dataset_name:
        from ser_hf.data.hf_datasets import infer_labels

        labels = list(data_args.labels) if data_args.labels else getattr(corpus, "class_labels", None)
        if not labels and corpus is not None and data_args.label_column_name:
            labels = infer_labels(corpus) or None
        attribute_range = tuple(data_args.attribute_range) if data_args.attribute_range else None
        return labels, None, attribute_range
    spec = get_corpus_spec(data_args.corpus)
    if data_args.label_map:  # cross-corpus: the shared class set replaces the corpus's own
        return shared_label_spec(data_args, spec.attribute_range)
    labels = list(data_args.labels) if data_args.labels else (list(spec.labels) if spec.labels else None)
    attribute_range = tuple(data_args.attribute_range) if data_args.attribute_range else spec.attribute_range
    return labels, spec.label_names, attribute_range


def drop_unusable_rows(dataset: datasets.Dataset, task: str) -> datasets.Dataset:
    """Rows with no target for the task (e.g. MSP-Podcast's O/X rows for the categorical task).

    They are removed on purpose and counted in the log; multi-task keeps rows with either target.
    """
    from ser_hf.data.schema import column_values

    if task == "categorical":
        keep = [label is not None for label in column_values(dataset, "label")]
    elif task == "attributes":
        columns = [column_values(dataset, name) for name in ("arousal", "valence", "dominance")]
        keep = [any(v is not None for v in values) for values in zip(*columns)]
    else:
        columns = [column_values(dataset, name) for name in ("label", "arousal", "valence", "dominance")]
        keep = [any(v is not None for v in values) for values in zip(*columns)]
    dropped = len(keep) - sum(keep)
    if dropped:
        logger.info("%d of %d rows have no %s target and are not used", dropped, len(keep), task)
        dataset = dataset.select([i for i, k in enumerate(keep) if k])
    return dataset


# ---------------------------------------------------------------------------------------------- model
def build_model(model_args: ModelArguments, *, labels, label_names, attribute_range, max_audio_seconds: float = 12.0):
    """Model and its processing class (feature extractor or tokenizer) from the model arguments."""
    from ser_hf.modeling import SERModelForSpeech, SERModelForText, build_feature_extractor

    speech = model_args.modality == "speech"
    if model_args.modality not in ("speech", "text"):
        raise ConfigError(f"modality must be speech or text, got {model_args.modality!r}")
    model_class = SERModelForSpeech if speech else SERModelForText
    if model_args.model_name_or_path:
        from ser_hf.finetuning import load_ser_model

        model = load_ser_model(model_args.model_name_or_path, is_trainable=True)  # a full or a LoRA adapter checkpoint
        if not isinstance(model.config, model_class.config_class):
            raise ConfigError(f"{model_args.model_name_or_path} is not a {model_args.modality} model")
        processor = _load_processor(model_args.model_name_or_path, speech, model_args.trust_remote_code)
        return model, processor
    common: dict[str, Any] = dict(
        task=model_args.task,
        labels=labels if model_args.task != "attributes" else None,
        label_names=label_names,
        pooling=model_args.pooling,
        layer_weighting=model_args.layer_weighting,
        activation=model_args.activation,
        head_hidden_size=model_args.head_hidden_size,
        head_dropout=model_args.head_dropout,
    )
    if attribute_range is not None:
        common["attribute_range"] = attribute_range
    if speech:
        common.update(
            freeze_feature_encoder=model_args.freeze_feature_encoder,
            max_audio_seconds=max_audio_seconds,
            input_normalization=model_args.input_normalization,
        )
    else:
        if model_args.input_normalization != "none":
            raise ConfigError("input_normalization applies to log-mel speech encoders, not to text models")
        common.update(max_length=model_args.max_text_length)
    config_class = SERSpeechConfig if speech else SERTextConfig
    if model_args.backbone_config is not None:
        model = model_class(config_class(backbone_config=model_args.backbone_config, **common))
        pretrained_path = None
    elif model_args.backbone:
        model = model_class.from_backbone(model_args.backbone, **common)
        pretrained_path = model_args.backbone
    else:
        raise ConfigError("set one of backbone (pretrained encoder), backbone_config (random init) or model_name_or_path")
    if speech:
        apply_spec_augment_settings(model, model_args)
        processor = build_feature_extractor(model.config, pretrained_path)
    else:
        processor = _load_tokenizer(model_args.tokenizer or model_args.backbone, model_args.trust_remote_code)
    return model, processor


def apply_spec_augment_settings(model, model_args: ModelArguments) -> None:
    """Set the wav2vec2-family encoder's own SpecAugment (``mask_time_prob`` / ``mask_feature_prob``)."""
    import torch

    wanted = {k: getattr(model_args, k, None) for k in ("mask_time_prob", "mask_feature_prob")}
    wanted = {k: float(v) for k, v in wanted.items() if v is not None}
    if not wanted:
        return
    for key, value in wanted.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{key} must be in [0, 1), got {value}")
    backbone = model.backbone
    if getattr(model.config, "is_whisper", False) or not hasattr(backbone.config, "mask_time_prob"):
        raise ValueError(
            f"{', '.join(wanted)} apply to wav2vec2/WavLM/HuBERT encoders; this encoder "
            f"({backbone.config.model_type}) has no such masking: use augment.specaugment for log-mel encoders"
        )
    for key, value in wanted.items():
        setattr(backbone.config, key, value)
        model.config.backbone_config[key] = value
    backbone.config.apply_spec_augment = True
    model.config.backbone_config["apply_spec_augment"] = True
    if getattr(backbone, "masked_spec_embed", None) is None and any(v > 0 for v in wanted.values()):
        backbone.masked_spec_embed = torch.nn.Parameter(torch.empty(backbone.config.hidden_size).uniform_())


def _load_tokenizer(name_or_path: str | None, trust_remote_code: bool):
    from transformers import AutoTokenizer

    if not name_or_path:
        raise ConfigError("a text model needs `tokenizer` (or a pretrained `backbone` to take it from)")
    return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)


def _load_processor(path: str, speech: bool, trust_remote_code: bool):
    if speech:
        from transformers import AutoFeatureExtractor

        return AutoFeatureExtractor.from_pretrained(path, trust_remote_code=trust_remote_code)
    return _load_tokenizer(path, trust_remote_code)


def build_collator(model, processor, *, max_seconds: float | None, seed: int = 0, text_column: str = "transcript"):
    """The collator matching a model's modality (eval mode; the trainer derives the training one)."""
    targets = SERTargets.for_config(model.config)
    if isinstance(model.config, SERSpeechConfig):
        return SpeechCollator(
            processor, targets, sampling_rate=model.config.sampling_rate, max_seconds=max_seconds, seed=seed
        )
    return TextCollator(processor, targets, max_length=model.config.max_length, text_column=text_column)


def uses_speaker_statistics(config) -> bool:
    return isinstance(config, SERSpeechConfig) and getattr(config, "input_normalization", "none") == "speaker"


def attach_speaker_statistics(collator, model, splits, *, train_split=None, progress: bool = True):
    """For a model with ``input_normalization: speaker``: compute each speaker's log-mel statistics
    from the unlabelled audio of ``splits`` (every split the run will featurise: training, eval and
    test speakers each from their own utterances) and give them to the collator. With
    ``train_split`` (training), the pooled statistics of its speakers become the model's
    ``input_mean`` / ``input_std``: what a row without a speaker, or a recording scored alone, is
    normalised by. No-op for other models."""
    if not uses_speaker_statistics(model.config) or not isinstance(collator, SpeechCollator):
        return None
    from ser_hf.data.speaker_statistics import compute_speaker_statistics

    parts = [split for split in splits if split is not None]
    total = sum(len(split) for split in parts)
    rows = (row for split in parts for row in split)
    statistics = compute_speaker_statistics(rows, collator.speaker_features, progress=progress, total=total)
    logger.info("speaker statistics: %d speakers from %d utterances", len(statistics), sum(statistics.utterances.values()))
    if train_split is not None:
        import torch

        from ser_hf.data.speaker_statistics import SPEAKER_COLUMN

        mean, std = statistics.pooled(str(s).strip() for s in train_split[SPEAKER_COLUMN] if s is not None)
        with torch.no_grad():
            model.input_mean.copy_(torch.from_numpy(mean))
            model.input_std.copy_(torch.from_numpy(std))
    statistics.fallback = (model.input_mean.detach().cpu().numpy(), model.input_std.detach().cpu().numpy())
    collator.speaker_statistics = statistics
    return statistics


def check_speaker_column(corpus: datasets.DatasetDict, split_names, source: str) -> None:
    """``input_normalization: speaker`` needs every row's speaker: say which rows lack one, before training."""
    from ser_hf.data.speaker_statistics import SPEAKER_COLUMN, rows_without_speaker

    problems = []
    for name in split_names:
        split = select_split(corpus, name)
        if split is None:
            continue
        missing = rows_without_speaker(split)
        if not missing:
            continue
        if SPEAKER_COLUMN not in split.column_names:
            problems.append(f"split {name!r} has no {SPEAKER_COLUMN!r} column")
            continue
        ids = split.select(missing[:3])["id"] if "id" in split.column_names else missing[:3]
        problems.append(f"split {name!r}: {len(missing)} of {len(split)} rows have no speaker (e.g. ids {', '.join(map(str, ids))})")
    if problems:
        raise ConfigError(
            f"input_normalization: speaker normalises each utterance by its speaker's statistics, but in {source} "
            + "; ".join(problems)
            + ". Add a speaker column (column_mapping: {\"<your column>\": \"speaker\"}) or use input_normalization: none"
        )


# ---------------------------------------------------------------------------------------------- runs
def check_training_data(
    data_args: DataArguments,
    model_args: ModelArguments,
    training_args: SERTrainingArguments,
    *,
    scan_audio: bool | None = None,
    progress: bool | None = None,
):
    """Every check `train` makes before building a model (``ser-hf validate`` runs exactly this)."""
    if (not data_args.eval_split or data_args.eval_split.lower() == "none") and training_args.eval_strategy != "no":
        raise ConfigError("eval_strategy needs an eval_split: give --eval_split, or --eval_strategy no")
    # One process per node opens the audio files (and refreshes the header cache); the others wait
    # for it and take its results from the cache, so 8 ranks do not open every file 8 times.
    with training_args.main_process_first(local=True, desc="validating the data"):
        checked = check_run_data(
            data_args,
            task=model_args.task,
            modality=model_args.modality,
            max_seconds=training_args.max_audio_seconds,
            scan_audio=scan_audio,
            progress=progress,
            header_cache=training_args.durations_cache,
            trust_header_cache=training_args.local_process_index != 0,
        )
    if model_args.modality == "speech" and model_args.input_normalization == "speaker":
        check_speaker_column(
            checked.corpus, (data_args.train_split, data_args.eval_split, data_args.test_split), data_args.source_name
        )
    return checked


def train(data_args: DataArguments, model_args: ModelArguments, training_args: SERTrainingArguments) -> dict[str, Any]:
    """Validate data, build the model, train with `SERTrainer`, evaluate on the test split, save.

    Returns the test metrics (also written to ``<output_dir>/test_metrics.json``).
    """
    from ser_hf.resume import resolve_resume_checkpoint
    from ser_hf.trainer import SERTrainer

    # A bad --resume_from_checkpoint is reported before any data is read ("last" may find none: fresh start).
    resume_from = resolve_resume_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    # The same checks as `ser-hf validate`, before any model exists: every problem at once, by file and line.
    checked = check_training_data(data_args, model_args, training_args)
    if checked.dropped and training_args.process_index == 0:
        write_dropped_rows(os.path.join(training_args.output_dir, DROPPED_ROWS_FILE), checked.dropped)
    corpus, labels, label_names = checked.corpus, checked.labels, checked.label_names
    attribute_range = checked.attribute_range
    train_set = drop_unusable_rows(select_split(corpus, data_args.train_split), model_args.task)
    if data_args.imbalance:
        from ser_hf.data.subsample import apply_imbalance

        train_set = apply_imbalance(train_set, data_args.imbalance, seed=data_args.imbalance_seed, labels=labels)
    if data_args.max_train_samples:
        train_set = train_set.select(range(min(data_args.max_train_samples, len(train_set))))
    eval_set = select_split(corpus, data_args.eval_split)
    eval_set = drop_unusable_rows(eval_set, model_args.task) if eval_set is not None else None
    test_set = select_split(corpus, data_args.test_split)
    test_set = drop_unusable_rows(test_set, model_args.task) if test_set is not None else None

    # Seed before the model exists: the Trainer seeds only after, so otherwise every seed shares one init.
    from transformers import set_seed

    set_seed(training_args.seed)  # the new head (and a random encoder) are initialised from the run's seed
    model, processor = build_model(
        model_args,
        labels=labels,
        label_names=label_names,
        attribute_range=attribute_range,
        max_audio_seconds=training_args.max_audio_seconds,
    )
    eval_seconds = training_args.max_eval_audio_seconds or training_args.max_audio_seconds
    collator = build_collator(
        model, processor, max_seconds=eval_seconds, seed=training_args.seed, text_column=data_args.text_column
    )
    if isinstance(collator, SpeechCollator):
        collator.train_max_seconds = training_args.max_audio_seconds
        collator.window_long_inputs = True  # long eval/test utterances are scored whole (windowed), not cut
    attach_speaker_statistics(
        collator,
        model,
        (train_set, eval_set, test_set),
        train_split=train_set,  # deterministic: a resumed run computes the very same population statistics
        progress=not training_args.disable_tqdm and training_args.process_index == 0,
    )
    trainer = SERTrainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=collator,
        processing_class=processor,
    )
    # The validation pass above stat-ed every audio file through the header cache length grouping reads.
    trainer.audio_headers_verified = bool(data_args.validate_audio and model_args.modality == "speech")
    trainer.audio_header_cache = checked.report.header_cache
    # "last" = the newest complete checkpoint in output_dir (a fresh start when there is none yet);
    # a SIGTERM stops after saving a checkpoint and raises ser_hf.resume.TrainingPreempted.
    train_output = trainer.train(resume_from_checkpoint=resume_from)
    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        write_json_atomic(os.path.join(training_args.output_dir, "train_metrics.json"), train_output.metrics)
    results: dict[str, Any] = {}
    if test_set is not None:
        metrics = trainer.evaluate(test_set, metric_key_prefix="test")
        results = {k.removeprefix("test_"): v for k, v in metrics.items()}
        if trainer.is_world_process_zero():
            write_json_atomic(os.path.join(training_args.output_dir, "test_metrics.json"), results)
    if trainer.is_world_process_zero():
        trainer.create_model_card(dataset_tags=[data_args.source_name], dataset=data_args.source_name)
    return results


def predict_split(
    model_dir: str,
    data_args: DataArguments,
    *,
    split: str = "test",
    batch_size: int = 16,
    max_seconds: float | None = None,
    perturbation=None,
    dataset: datasets.Dataset | None = None,
):
    """Predictions of a saved checkpoint for *every* row of a split (or of ``dataset``), in row order.

    ``perturbation`` (`ser_hf.data.augment.Perturbation`, speech models only) degrades every
    utterance the same way each time (the robustness report).

    Rows without targets are predicted too (an unlabelled challenge test set needs a submission);
    the report leaves them out of the metrics. Runs through `Trainer.predict`, so under
    ``accelerate launch`` every process gets all predictions, gathered without duplicates.
    Returns ``(config, dataset, predictions, runtime metrics, is_main_process)``.
    """
    import dataclasses
    import tempfile

    from transformers import AutoConfig

    import ser_hf.modeling  # noqa: F401  (registers the ser-hf model types with AutoConfig)
    from ser_hf.evaluation.report import Predictions, references_from_rows
    from ser_hf.trainer import SERTrainer

    config = AutoConfig.from_pretrained(model_dir)
    model_args = ModelArguments(modality="speech" if isinstance(config, SERSpeechConfig) else "text", model_name_or_path=model_dir)
    if dataset is None:  # the same checks as `ser-hf validate`, with the model's labels and scale, before loading it
        dataset = select_split(check_evaluation_data(data_args, config, split).corpus, split)
    model, processor = build_model(model_args, labels=None, label_names=None, attribute_range=None)
    references_from_rows(dataset, model.config)  # an unknown class code fails before the long pass
    seconds = max_seconds or getattr(model.config, "max_audio_seconds", None)
    collator = build_collator(model, processor, max_seconds=seconds, text_column=data_args.text_column)
    collator = dataclasses.replace(collator, targets=SERTargets())  # inputs only: nothing to compute a loss on
    if isinstance(collator, SpeechCollator):
        collator.window_long_inputs = True  # an utterance longer than the window is scored whole, windowed
    if perturbation is not None:
        if not isinstance(collator, SpeechCollator):
            raise ValueError("perturbations degrade audio; this is a text model")
        collator = dataclasses.replace(collator, perturbation=perturbation)
    # A speaker-normalised model: each speaker of this split by its own (perturbed) audio.
    attach_speaker_statistics(collator, model, (dataset,), progress=False)
    with tempfile.TemporaryDirectory(prefix="ser-hf-predict-") as scratch:
        args = SERTrainingArguments(output_dir=scratch, per_device_eval_batch_size=batch_size, report_to=[])
        trainer = SERTrainer(model=model, args=args, data_collator=collator, processing_class=processor)
        output = trainer.predict(
            dataset, ignore_keys=["attributes_normalized", "pooled_output", "hidden_states"], metric_key_prefix="predict"
        )
    predictions = Predictions.from_model_output(model.config, output.predictions)
    if len(predictions) != len(dataset):
        raise RuntimeError(f"got {len(predictions)} predictions for {len(dataset)} rows of split {split!r}")
    runtime = {k.removeprefix("predict_"): v for k, v in output.metrics.items()}
    return model.config, dataset, predictions, runtime, trainer.is_world_process_zero()


def evaluate_checkpoint(
    model_dir: str,
    data_args: DataArguments,
    *,
    split: str = "test",
    batch_size: int = 16,
    max_seconds: float | None = None,
    output_dir: str | None = None,
    report: bool = True,
    bootstrap_resamples: int = 1000,
) -> dict[str, Any]:
    """Metrics of a saved checkpoint on one split, over the whole split (also under accelerate launch).

    With ``output_dir`` the main process writes ``metrics.json`` there, and with ``report`` the
    whole evaluation report beside it (see `ser_hf.evaluation.report`). Top-level keys of the returned
    dict are the trainer's metric names (``macro_f1``, ``uar``, ``ccc_mean``, ...).
    """
    from ser_hf.evaluation.report import FILES, compute_evaluation, write_evaluation_report

    config, dataset, predictions, runtime, is_main = predict_split(
        model_dir, data_args, split=split, batch_size=batch_size, max_seconds=max_seconds
    )
    extra = {"model": model_dir, "corpus": data_args.source_name, "split": split, **runtime}
    title = f"{data_args.source_name} {split}"
    if output_dir and is_main and report:
        return write_evaluation_report(
            output_dir, predictions, dataset, config, title=title, extra_metrics=extra, n_resamples=bootstrap_resamples
        )
    results = compute_evaluation(predictions, dataset, config, n_resamples=bootstrap_resamples if is_main else 0)
    results.update({k: v for k, v in extra.items() if k not in results})
    if output_dir and is_main:
        write_json_atomic(os.path.join(output_dir, FILES["metrics"]), results)
    return results


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)
