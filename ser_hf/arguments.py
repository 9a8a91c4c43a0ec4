"""Data and model arguments of the `ser-hf` commands (the training ones are `SERTrainingArguments`).

A recipe YAML is flat: every key belongs to one of `DataArguments`, `ModelArguments` or
`SERTrainingArguments`, and any key can be overridden on the command line (``--learning_rate 1e-4``).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataArguments:
    """Which corpus to read and how to use its splits."""

    corpus: str = field(
        default="synthetic",
        metadata={"help": "Corpus loader: msp_podcast, iemocap, msp_improv, crema_d, meld, esd, tess, emodb, ravdess, manifest (CSV/JSONL) or synthetic."},
    )
    data_path: str | None = field(
        default=None, metadata={"help": "Corpus root folder, or the manifest file for corpus=manifest."}
    )
    corpus_options: dict | None = field(
        default=None,
        metadata={
            "help": "Extra keyword arguments of the corpus loader (YAML mapping; JSON on the command line). For "
            "corpus=manifest: column_mapping ({your column: schema column}, e.g. {\"path\": \"audio\", \"emotion\": "
            "\"label\"}; schema columns: id audio transcript label arousal valence dominance speaker gender split), "
            "audio_root, split, encoding (default utf-8; e.g. latin-1)."
        },
    )
    train_split: str = field(default="train", metadata={"help": "Training split; join several with '+' (train+dev)."})
    eval_split: str | None = field(default="dev", metadata={"help": "Split for evaluation during training (none: skip)."})
    test_split: str | None = field(default="test", metadata={"help": "Split evaluated after training (none: skip)."})
    labels: list[str] | None = field(
        default=None, metadata={"help": "Class codes to model (default: the corpus's classes)."}
    )
    attribute_range: list[float] | None = field(
        default=None, metadata={"help": "Declared (low, high) of the attribute scale (default: the corpus's, e.g. 1 7)."}
    )
    on_invalid_rows: str = field(
        default="error",
        metadata={
            "help": "Bad rows (unparsable lines included): 'error' stops before training and lists them all with file "
            "and line; 'drop' removes them and writes the list to <output_dir>/dropped_rows.csv."
        },
    )
    validate_audio: bool = field(default=True, metadata={"help": "Open every audio file during validation."})
    scan_audio: bool = field(
        default=False,
        metadata={
            "help": "Decode every audio file once during validation to warn about silent or clipped recordings "
            "(on by default in `ser-hf validate`)."
        },
    )
    allow_missing_classes: bool = field(
        default=False,
        metadata={"help": "Allow classes of the label set with no training rows (a warning instead of an error)."},
    )
    text_column: str = field(default="transcript", metadata={"help": "Column the text model reads."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows (debugging)."})
    imbalance: str | None = field(
        default=None,
        metadata={
            "help": "Make the training split imbalanced: 'CLASS:KEEP_FRACTION ...' (e.g. 'A:0.15 E:0.15') keeps "
            "that fraction of each listed class; none: untouched. Test/dev splits are never subsampled "
            "(see ser_hf.data.subsample)."
        },
    )
    imbalance_seed: int = field(default=0, metadata={"help": "Seed of the imbalance subsampling (same subset for every training seed)."})
    cv_folds: str | None = field(
        default=None,
        metadata={
            "help": "Cross-validation protocol: speaker (leave-one-speaker-out), session (leave-one-session-out), "
            "K (K speaker folds) or a preset (iemocap_loso, emodb_loso, ...; see ser_hf.data.folds). With cv_fold "
            "the corpus is regrouped into train/test (and dev with cv_dev_fold); ser-hf cv runs every fold."
        },
    )
    cv_fold: int | None = field(default=None, metadata={"help": "The held-out fold (0-based) of cv_folds."})
    cv_dev_fold: bool = field(default=False, metadata={"help": "Also hold out the next fold as the dev split."})
    label_map: str | None = field(
        default=None,
        metadata={
            "help": "Map the corpus's classes onto a class set shared across corpora: 'shared' (neutral, happy, "
            "angry, sad) or a YAML file (see ser_hf.data.label_maps). Rows of other classes are dropped and counted."
        },
    )
    # A Hugging Face `datasets` input instead of a corpus loader (names as in transformers'
    # run_audio_classification.py); see ser_hf.data.hf_datasets.
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "A `datasets` source instead of --corpus: a Hub id, a local dataset folder (audiofolder, parquet, "
            "CSV, JSON), a parquet/CSV/JSON file or a save_to_disk folder. Audio is decoded without FFmpeg."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration (subset) of --dataset_name."})
    dataset_revision: str | None = field(default=None, metadata={"help": "Branch, tag or commit of a Hub --dataset_name."})
    dataset_data_dir: str | None = field(
        default=None, metadata={"help": "data_dir of load_dataset (e.g. --dataset_name audiofolder --dataset_data_dir DIR)."}
    )
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "Cache folder of load_dataset (default: HF_DATASETS_CACHE)."})
    audio_column_name: str = field(default="audio", metadata={"help": "Audio column of --dataset_name (Audio, path or {array, sampling_rate})."})
    label_column_name: str | None = field(
        default="label", metadata={"help": "Class column of --dataset_name (ClassLabel integers become their names); none: no classes."}
    )
    text_column_name: str | None = field(default=None, metadata={"help": "Transcript column of --dataset_name."})
    id_column_name: str | None = field(default=None, metadata={"help": "Utterance id column of --dataset_name (default: SPLIT/ROW)."})
    speaker_column_name: str | None = field(default=None, metadata={"help": "Speaker column of --dataset_name."})
    gender_column_name: str | None = field(default=None, metadata={"help": "Gender column of --dataset_name."})
    attribute_column_names: dict | None = field(
        default=None,
        metadata={"help": 'Attribute columns of --dataset_name as JSON: \'{"arousal": "EmoAct", "valence": "EmoVal"}\'.'},
    )
    train_split_name: str | None = field(default=None, metadata={"help": "Alias of --train_split (run_audio_classification.py's name)."})
    eval_split_name: str | None = field(default=None, metadata={"help": "Alias of --eval_split (e.g. validation)."})
    test_split_name: str | None = field(default=None, metadata={"help": "Alias of --test_split."})

    def __post_init__(self):
        for alias, target in (("train_split_name", "train_split"), ("eval_split_name", "eval_split"), ("test_split_name", "test_split")):
            if getattr(self, alias):
                setattr(self, target, getattr(self, alias))
        for name in ("label_column_name", "text_column_name"):
            if isinstance(getattr(self, name), str) and getattr(self, name).lower() == "none":
                setattr(self, name, None)

    @property
    def source_name(self) -> str:
        """What the data is called in titles and cards: the dataset name, else the corpus."""
        return self.dataset_name or self.corpus


@dataclass
class ModelArguments:
    """Which model to train: a pretrained encoder by name, a saved SER checkpoint, or a config built in code."""

    modality: str = field(default="speech", metadata={"help": "speech or text."})
    task: str = field(default="categorical", metadata={"help": "categorical, attributes or multitask."})
    backbone: str | None = field(
        default=None,
        metadata={"help": "Pretrained encoder name or path (e.g. microsoft/wavlm-large, roberta-large)."},
    )
    backbone_config: dict | None = field(
        default=None,
        metadata={"help": "Encoder config as a mapping with model_type (YAML): a randomly initialised encoder."},
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A saved ser-hf checkpoint to continue from (overrides backbone)."}
    )
    tokenizer: str | None = field(default=None, metadata={"help": "Tokenizer name or path for text models (default: backbone)."})
    pooling: str | None = field(default=None, metadata={"help": "attentive_stats (speech default), stats (mean and std) or mean (text default)."})
    layer_weighting: str = field(default="last", metadata={"help": "last or weighted_sum of all encoder layers."})
    activation: str = field(default="mish", metadata={"help": "Head activation: relu, gelu, mish, silu, tanh, leaky_relu, elu."})
    head_hidden_size: int = field(default=256, metadata={"help": "Hidden width of the emotion head."})
    head_dropout: float = field(default=0.1, metadata={"help": "Dropout in the emotion head."})
    freeze_feature_encoder: bool = field(default=True, metadata={"help": "Keep the CNN feature encoder frozen."})
    input_normalization: str = field(
        default="none",
        metadata={
            "help": "none; utterance: each utterance's log-mel features to zero mean, unit variance per mel bin; "
            "speaker: the same with the statistics of all the utterances of the row's speaker (needs a speaker "
            "column; test speakers from their own unlabelled audio). Inside the model; Whisper-style encoders only."
        },
    )
    max_text_length: int = field(default=128, metadata={"help": "Tokens per transcript for text models."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom code from the Hub (off by default)."})
    mask_time_prob: float | None = field(
        default=None,
        metadata={
            "help": "wav2vec2/WavLM/HuBERT SpecAugment during training: probability of a frame starting a masked "
            "time span (default: the encoder's own, 0.05 for most). Log-mel (Whisper-style) encoders: use augment.specaugment."
        },
    )
    mask_feature_prob: float | None = field(
        default=None,
        metadata={"help": "wav2vec2/WavLM/HuBERT SpecAugment: probability of masking a feature-channel span (default: the encoder's)."},
    )

    def __post_init__(self):
        """Choices that are otherwise only noticed when the model is built, after the data pass: checked at parse
        time, so ``ser-hf train``/``validate``/``ablate`` report them as config errors before anything runs."""
        from ser_hf.modeling.configuration import INPUT_NORMALIZATIONS, LAYER_WEIGHTINGS, POOLINGS
        from ser_hf.modeling.heads import ACTIVATIONS

        checks = (
            ("pooling", self.pooling, (None, *POOLINGS)),
            ("layer_weighting", self.layer_weighting, LAYER_WEIGHTINGS),
            ("activation", self.activation.lower(), tuple(ACTIVATIONS)),
            ("input_normalization", self.input_normalization, INPUT_NORMALIZATIONS),
        )
        for name, value, choices in checks:
            if value not in choices:
                raise ValueError(f"{name}={value!r} is not one of {[c for c in choices if c is not None]}")
        if self.input_normalization != "none":
            kind = self.backbone_config.get("model_type") if isinstance(self.backbone_config, dict) else None
            if self.modality == "text" or (kind is not None and kind != "whisper"):
                reads = "transcripts" if self.modality == "text" else f"raw waveform ({kind})"
                raise ValueError(
                    f"input_normalization={self.input_normalization!r} normalises log-mel features of Whisper-style "
                    f"speech encoders; this model reads {reads}. Use input_normalization: none"
                )
