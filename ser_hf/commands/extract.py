"""`ser-hf extract --model DIR --corpus NAME --data_path PATH [--split train+dev+test] --output_dir DIR`.

Caches the pooled features of a fine-tuned speech or text checkpoint (see `ser_hf.features`).
For big corpora run it under accelerate: ``accelerate launch -m ser_hf.cli extract ...``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ser_hf.arguments import DataArguments
from ser_hf.config_parser import parse_config
from ser_hf.errors import ConfigError


@dataclass
class ExtractArguments:
    model: str = field(metadata={"help": "Fine-tuned ser-hf speech or text checkpoint directory."})
    output_dir: str = field(metadata={"help": "Where the feature dataset is saved (datasets save_to_disk)."})
    split: str = field(default="train+dev+test", metadata={"help": "Splits to extract ('a+b' joins splits)."})
    batch_size: int = field(default=16, metadata={"help": "Utterances per forward pass."})
    crop_seconds: float | None = field(
        default=None, metadata={"help": "Crop audio to its first N seconds (default: whole utterances)."}
    )
    resume: bool = field(default=True, metadata={"help": "Reuse finished shards / an up-to-date result (--no_resume: recompute)."})
    shard_size: int = field(default=1024, metadata={"help": "Rows per resumable shard."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers decoding audio."})


def load_checkpoint(model_dir: str):
    """A saved ser-hf speech or text model and its processor, by what its config says it is."""
    from transformers import AutoConfig

    import ser_hf.modeling  # noqa: F401  (registers the ser-hf configs with AutoConfig)
    from ser_hf.arguments import ModelArguments
    from ser_hf.configuration import SERSpeechConfig, SERTextConfig
    from ser_hf.experiment import build_model

    config = AutoConfig.from_pretrained(model_dir)
    if not isinstance(config, (SERSpeechConfig, SERTextConfig)):
        raise ConfigError(f"{model_dir}: a {type(config).__name__} has no encoder to extract features from")
    modality = "speech" if isinstance(config, SERSpeechConfig) else "text"
    model_args = ModelArguments(modality=modality, model_name_or_path=model_dir)
    return build_model(model_args, labels=None, label_names=None, attribute_range=None)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args, data_args = parse_config((ExtractArguments, DataArguments), argv, prog="ser-hf extract")
    from ser_hf.experiment import select_split
    from ser_hf.features import extract_features

    from ser_hf.preflight import check_evaluation_data

    model, processor = load_checkpoint(args.model)
    # Checked like evaluate's input: a text model's rows need transcripts, known labels, readable audio.
    dataset = select_split(check_evaluation_data(data_args, model.config, args.split).corpus, args.split)
    features = extract_features(
        model,
        processor,
        dataset,
        output_dir=args.output_dir,
        batch_size=args.batch_size,
        crop_seconds=args.crop_seconds,
        resume=args.resume,
        shard_size=args.shard_size,
        text_column=data_args.text_column,
        num_workers=args.num_workers,
    )
    print(f"{len(features)} feature vectors of size {len(features[0]['features'])} in {args.output_dir}")
    return 0
