"""`ser-hf fuse --config fusion.yaml`: train the fusion head on cached audio and text features.

The feature datasets come from `ser-hf extract` (one per fine-tuned model); rows are joined by id,
concatenated audio then text, split by their ``split`` column, and a `SERFusionModel` is trained
with `SERTrainer` (same losses, samplers and metrics as the other models), then tested.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import datasets

from ser_hf.config_parser import parse_config
from ser_hf.errors import ConfigError
from ser_hf.training_args import SERTrainingArguments

logger = logging.getLogger(__name__)


@dataclass
class FuseArguments:
    """Which cached features to fuse and what head to train on them."""

    audio_features: str = field(metadata={"help": "Feature dataset of the fine-tuned speech model (ser-hf extract)."})
    text_features: str = field(metadata={"help": "Feature dataset of the fine-tuned text model (ser-hf extract)."})
    corpus: str | None = field(
        default=None, metadata={"help": "Corpus whose class codes and attribute range to use (default: the speech model's)."}
    )
    labels: list[str] | None = field(default=None, metadata={"help": "Class codes to model (overrides corpus)."})
    train_split: str = field(default="train", metadata={"help": "Training split(s) of the features' split column ('a+b')."})
    eval_split: str | None = field(default="dev", metadata={"help": "Evaluation split during training (none: skip)."})
    test_split: str | None = field(default="test", metadata={"help": "Split tested after training (none: skip)."})
    task: str = field(default="categorical", metadata={"help": "categorical, attributes or multitask."})
    activation: str = field(default="mish", metadata={"help": "Head activation (the paper: mish)."})
    head_hidden_size: int = field(default=256, metadata={"help": "Hidden width of the fusion head."})
    head_dropout: float = field(default=0.1, metadata={"help": "Dropout in the fusion head."})
    input_layer_norm: bool = field(default=True, metadata={"help": "LayerNorm each feature block before concatenating."})
    input_dropout: float = field(default=0.0, metadata={"help": "Dropout on the concatenated features."})


def select_rows_by_split(dataset: datasets.Dataset, name: str | None) -> datasets.Dataset | None:
    """Rows whose ``split`` is one of ``name`` ('a+b'); every named split must have rows."""
    if name is None or name.lower() == "none":
        return None
    wanted = name.split("+")
    from ser_hf.data.schema import column_values

    splits = column_values(dataset, "split")
    present = set(splits)
    missing = [s for s in wanted if s not in present]
    if missing:
        raise ConfigError(f"split(s) {missing} have no rows in the feature datasets (splits present: {sorted(present, key=str)})")
    return dataset.select([i for i, s in enumerate(splits) if s in wanted])


def _label_spec(args: FuseArguments, metas: list[dict]) -> tuple[list[str] | None, dict | None, list[float] | None]:
    """Class codes, readable names and attribute range: from the arguments, the corpus, or the models."""
    from ser_hf.data.corpora import get_corpus_spec

    spec = get_corpus_spec(args.corpus) if args.corpus else None
    labels = args.labels or (list(spec.labels) if spec and spec.labels else None)
    labels = labels or next((m["labels"] for m in metas if m.get("labels")), None)
    names = (dict(spec.label_names) if spec else None) or next((m["label_names"] for m in metas if m.get("label_names")), None)
    attribute_range = (spec.attribute_range if spec and spec.attribute_range else None) or next(
        (m["attribute_range"] for m in metas if m.get("attribute_range")), None
    )
    if args.task != "attributes" and not labels:
        raise ConfigError(f"task={args.task!r} needs class codes: set `labels` or `corpus` (the feature models have none)")
    return labels, names, list(attribute_range) if attribute_range else None


def train_fusion(args: FuseArguments, training_args: SERTrainingArguments) -> dict[str, Any]:
    """Train and test a `SERFusionModel`; returns the test metrics (also in ``test_metrics.json``)."""
    from ser_hf.data.collators import SERTargets
    from ser_hf.experiment import drop_unusable_rows
    from ser_hf.features import FeatureCollator, join_feature_datasets, load_features, read_feature_metadata
    from ser_hf.io import write_json_atomic
    from ser_hf.modeling.fusion import SERFusionConfig, SERFusionModel
    from ser_hf.trainer import SERTrainer

    paths = {"audio": args.audio_features, "text": args.text_features}
    metas = [read_feature_metadata(path) for path in paths.values()]
    joined = join_feature_datasets({name: load_features(path) for name, path in paths.items()})
    sizes = {name: meta["feature_size"] for name, meta in zip(paths, metas)}
    labels, label_names, attribute_range = _label_spec(args, metas)
    config = SERFusionConfig(
        input_sizes=sizes,
        input_layer_norm=args.input_layer_norm,
        input_dropout=args.input_dropout,
        task=args.task,
        labels=labels if args.task != "attributes" else None,
        label_names=label_names,
        activation=args.activation,
        head_hidden_size=args.head_hidden_size,
        head_dropout=args.head_dropout,
        **({"attribute_range": attribute_range} if attribute_range else {}),
    )
    model = SERFusionModel(config)
    splits = {
        role: select_rows_by_split(joined, name)
        for role, name in (("train", args.train_split), ("eval", args.eval_split), ("test", args.test_split))
    }
    splits = {role: drop_unusable_rows(ds, args.task) if ds is not None else None for role, ds in splits.items()}
    if splits["train"] is None:
        raise ConfigError("fusion needs a train_split")
    if splits["eval"] is None and training_args.eval_strategy != "no":
        raise ConfigError("eval_strategy needs an eval_split")
    trainer = SERTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits["eval"],
        data_collator=FeatureCollator(SERTargets.for_config(config)),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)  # "last": newest checkpoint, if any
    trainer.save_model(training_args.output_dir)
    results: dict[str, Any] = {}
    if splits["test"] is not None:
        metrics = trainer.evaluate(splits["test"], metric_key_prefix="test")
        results = {k.removeprefix("test_"): v for k, v in metrics.items()}
        if trainer.is_world_process_zero():
            write_json_atomic(os.path.join(training_args.output_dir, "test_metrics.json"), results)
    return results


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fuse_args, training_args = parse_config((FuseArguments, SERTrainingArguments), argv, prog="ser-hf fuse")
    from ser_hf.experiment import dump_json

    from ser_hf.resume import TrainingPreempted

    try:
        results = train_fusion(fuse_args, training_args)
    except TrainingPreempted as stopped:  # SIGTERM: a checkpoint was saved; rerun with --resume_from_checkpoint last
        logging.getLogger("ser_hf.fuse").warning("%s", stopped)
        return stopped.exit_code
    if training_args.process_index == 0 and results:
        print(dump_json({"test": results}))
    return 0
