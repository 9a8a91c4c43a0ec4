"""Model cards for ser-hf checkpoints.

A SER model is only usable by someone else if they know what its outputs mean (which classes, which
attribute scale), what it was trained on and how (the paper's strategies change results a lot), and
how well it did. The card states all of that in prose and tables, and puts the evaluation results
in the Hub's ``model-index`` metadata so they show up on the model page. `SERTrainer.push_to_hub`
writes it through `write_trainer_model_card`.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any

from huggingface_hub import EvalResult, ModelCardData
from transformers import TrainingArguments

from ser_hf.io import write_text_atomic

LIBRARY_NAME = "ser-hf"
PAPER = (
    '"Lessons Learnt: Revisit Key Training Strategies for Effective Speech Emotion Recognition in the Wild", '
    "Interspeech 2025"
)


@dataclass(frozen=True)
class DatasetFacts:
    """What a card needs to say about a known corpus."""

    name: str
    language: str | None
    kind: str  # "in-the-wild", "acted" or "synthetic"
    description: str


KNOWN_DATASETS: dict[str, DatasetFacts] = {
    "msp_podcast": DatasetFacts(
        "MSP-Podcast", "en", "in-the-wild", "natural English speech from podcast recordings, crowd-annotated"
    ),
    "emodb": DatasetFacts("EmoDB", "de", "acted", "German sentences acted by 10 speakers in 7 emotions"),
    "ravdess": DatasetFacts("RAVDESS", "en", "acted", "two English sentences acted by 24 North-American actors"),
    "synthetic": DatasetFacts(
        "ser-hf synthetic corpus", None, "synthetic", "generated tones and template transcripts; for tests and demos only"
    ),
}

# metric key -> (model-index metric type, readable name, metric args)
_METRICS: dict[str, tuple[str, str, dict | None]] = {
    "macro_f1": ("f1", "Macro-F1", {"average": "macro"}),
    "micro_f1": ("f1", "Micro-F1", {"average": "micro"}),
    "accuracy": ("accuracy", "Accuracy", None),
    "uar": ("recall", "UAR (unweighted average recall)", {"average": "macro"}),
    "ccc_mean": ("ccc", "CCC (mean)", None),
}
_LANGUAGES = {"en": "English", "de": "German"}
_ATTRIBUTE_MEANING = {
    "arousal": "calm (low) to excited (high)",
    "valence": "negative (low) to positive (high)",
    "dominance": "weak/submissive (low) to strong/dominant (high)",
}
_LOSSES = {
    "ce": "cross-entropy",
    "weighted_ce": "class-weighted cross-entropy",
    "focal": "focal loss",
    "soft_ce": "soft-label cross-entropy",
    "ccc": "1 - CCC (concordance correlation coefficient)",
    "mse": "mean squared error",
}
_SAMPLERS = {
    "none": "plain shuffling",
    "up": "class-balanced up-sampling (every class drawn as often as the largest)",
    "down": "class-balanced down-sampling (every class cut to the smallest, new subset each epoch)",
    "weighted": "weighted random sampling (inverse class frequency)",
}
_WEIGHTINGS = {
    "none": "none",
    "inverse": "inverse frequency, w_c = N / (K * n_c)",
    "sqrt_inverse": "square root of inverse frequency",
    "effective_number": "effective number of samples",
}
# Fields of the training arguments or model config that describe how the backbone was fine-tuned
# (fine-tuning policy, frozen layers, LoRA); matched by name so new policies appear without edits here.
_FINETUNING_FIELD = re.compile(r"finetun|fine_tun|lora|freeze|frozen|adapter|checkpointing")
_METRIC_KEY = re.compile(r"^(macro_f1|micro_f1|accuracy|uar|ccc_\w+)$")
_SPLIT_PREFIXES = ("eval", "test", "dev", "validation", "train")


def _get(source: Any, name: str, default=None):
    if source is None:
        return default
    if isinstance(source, dict):
        return source.get(name, default)
    return getattr(source, name, default)


def _fields(source: Any) -> dict[str, Any]:
    if source is None:
        return {}
    if isinstance(source, dict):
        return dict(source)
    if hasattr(source, "to_dict") and not isinstance(source, TrainingArguments):
        return source.to_dict()  # configs: also a dataclass in transformers 5, but fields miss the SER ones
    if dataclasses.is_dataclass(source):
        return {f.name: getattr(source, f.name) for f in dataclasses.fields(source)}
    return dict(vars(source))


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_format(v) for v in value)
    return str(value)


def normalize_results(eval_results: dict | None) -> dict[str, dict[str, float]]:
    """``{split: {metric: value}}`` with only SER scores kept (macro-F1, UAR, accuracy, CCC ...).

    Accepts that form or one flat dict of metrics, whose keys may carry the Trainer's
    ``eval_``/``test_`` prefix (the split is taken from it).
    """
    if not eval_results:
        return {}
    if all(isinstance(v, dict) for v in eval_results.values()):
        nested = {split: dict(metrics) for split, metrics in eval_results.items()}
    else:
        nested = {}
        for key, value in eval_results.items():
            prefix, _, name = key.partition("_")
            if prefix not in _SPLIT_PREFIXES:
                prefix, name = "evaluation", key
            nested.setdefault(prefix, {})[name] = value
    results: dict[str, dict[str, float]] = {}
    for split, metrics in nested.items():
        kept = {}
        for name, value in metrics.items():
            name = name.removeprefix(f"{split}_")
            if _METRIC_KEY.match(name) and isinstance(value, (int, float)):
                kept[name] = float(value)
        if kept:
            results[split] = kept
    return results


def _metric_info(name: str) -> tuple[str, str, dict | None]:
    if name in _METRICS:
        return _METRICS[name]
    if name.startswith("ccc_"):
        return "ccc", f"CCC ({name.removeprefix('ccc_')})", None
    return name, name, None


@dataclass
class SERModelCardData:
    """Everything the card states, gathered from a model config, training arguments and results."""

    model_name: str
    model_type: str
    task: str
    labels: list[tuple[str, str]] = field(default_factory=list)  # (code, readable name)
    attributes: list[str] = field(default_factory=list)
    attribute_range: tuple[float, float] | None = None
    backbone: str = "unknown"
    backbone_details: str = ""
    architecture: dict[str, str] = field(default_factory=dict)
    training: dict[str, str] = field(default_factory=dict)
    finetuning: dict[str, str] = field(default_factory=dict)
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)
    language: list[str] | None = None
    license: str | None = None
    tags: list[str] = field(default_factory=list)
    base_model: str | None = None
    repo_id: str | None = None  # Hub id used in the usage snippets (default: model_name)
    sampling_rate: int = 16000
    lora: bool = False  # the checkpoint holds LoRA adapters on a base model, not a full model
    framework_versions: dict[str, str] = field(default_factory=lambda: framework_versions())

    @property
    def is_text(self) -> bool:
        return self.model_type == "ser_text"

    @property
    def _modality(self) -> str:
        return {"ser_text": "text", "ser_speech": "speech"}.get(self.model_type, "speech and text")

    @property
    def pipeline_tag(self) -> str:
        return "text-classification" if self.is_text else "audio-classification"

    @classmethod
    def from_config(
        cls,
        model_config,
        training_args=None,
        eval_results: dict | None = None,
        datasets: str | list[str] | None = None,
        *,
        model_name: str | None = None,
        language: str | list[str] | None = None,
        license: str | None = None,
        tags: str | list[str] | None = None,
        base_model: str | None = None,
        trainable_parameters: tuple[int, int] | None = None,
        repo_id: str | None = None,
        train_state=None,
    ) -> "SERModelCardData":
        datasets = [datasets] if isinstance(datasets, str) else list(datasets or [])
        datasets = [_portable_dataset_name(d) for d in datasets]
        if language is None:
            language = sorted({KNOWN_DATASETS[d].language for d in datasets if d in KNOWN_DATASETS and KNOWN_DATASETS[d].language})
        language = [language] if isinstance(language, str) else (list(language) or None)
        tags = [tags] if isinstance(tags, str) else list(tags or [])
        model_type = _get(model_config, "model_type", "ser")
        task = _get(model_config, "task", "categorical")
        codes = list(_get(model_config, "labels", None) or [])
        names = _get(model_config, "label_names", None) or {}
        has_attributes = task in ("attributes", "multitask")
        backbone, details = _describe_backbone(model_config)
        base_model = base_model or _get(model_config, "backbone_name_or_path", None)
        card = cls(
            model_name=model_name or f"{model_type}-{task}",
            model_type=model_type,
            task=task,
            labels=[(code, names.get(code, code)) for code in codes] if task != "attributes" else [],
            attributes=list(_get(model_config, "attributes", []) or []) if has_attributes else [],
            attribute_range=tuple(_get(model_config, "attribute_range", (1.0, 7.0))) if has_attributes else None,
            backbone=backbone,
            backbone_details=details,
            architecture=_describe_architecture(model_config),
            training=_describe_training(training_args, task, train_state),
            finetuning=_describe_finetuning(model_config, training_args, trainable_parameters),
            results=normalize_results(eval_results),
            datasets=datasets,
            language=language,
            license=license,
            base_model=base_model if base_model and not os.path.isdir(base_model) else None,
            repo_id=repo_id,
            sampling_rate=_get(model_config, "sampling_rate", 16000),
            lora=bool(_get(training_args, "use_lora", False)),
        )
        modality = "text" if card.is_text else "audio"
        default_tags = [LIBRARY_NAME, "speech-emotion-recognition", "emotion-recognition", modality, *_task_tags(task)]
        card.tags = list(dict.fromkeys(default_tags + tags))
        return card

    # ------------------------------------------------------------------ metadata
    def hub_metadata(self) -> ModelCardData:
        """The YAML header: library, pipeline tag, tags, datasets and the ``model-index`` results."""
        eval_results = []
        dataset_id = self.datasets[0] if self.datasets else "custom"
        dataset_name = KNOWN_DATASETS[dataset_id].name if dataset_id in KNOWN_DATASETS else (
            dataset_id if self.datasets else "unspecified evaluation data"
        )
        for split, metrics in self.results.items():
            for key, value in metrics.items():
                metric_type, metric_name, metric_args = _metric_info(key)
                eval_results.append(
                    EvalResult(
                        task_type=self.pipeline_tag,
                        task_name=("Text" if self.is_text else "Speech") + " emotion recognition",
                        dataset_type=dataset_id,
                        dataset_name=dataset_name,
                        dataset_split=split,
                        metric_type=metric_type,
                        metric_name=metric_name,
                        metric_value=round(value, 4),
                        metric_args=metric_args,
                    )
                )
        return ModelCardData(
            library_name="peft" if self.lora else LIBRARY_NAME,
            pipeline_tag=self.pipeline_tag,
            tags=self.tags,
            datasets=[d for d in self.datasets if is_hub_dataset_id(d)] or None,  # Hub ids only
            language=self.language,
            license=self.license,
            base_model=self.base_model,
            metrics=sorted({_metric_info(k)[0] for m in self.results.values() for k in m}) or None,
            model_name=self.model_name if eval_results else None,
            eval_results=eval_results or None,
        )

    # ------------------------------------------------------------------ body
    def render(self) -> str:
        """README.md text: YAML metadata, then the card body."""
        sections = [
            f"# {self.model_name}\n\n{self._summary()}",
            self._outputs_section(),
            _table_section("Model", ["Component", "Setting"], [("Backbone", self.backbone_details or self.backbone), *self.architecture.items()]),
            self._training_section(),
            self._results_section(),
            self._usage_section(),
            self._limitations_section(),
            _table_section("Framework versions", ["Package", "Version"], sorted(self.framework_versions.items())),
            "## Citation\n\nThe training strategies follow " + PAPER + ".",
        ]
        body = "\n\n".join(s for s in sections if s)
        return f"---\n{self.hub_metadata().to_yaml()}\n---\n\n{body}\n"

    def _summary(self) -> str:
        what = {
            "categorical": f"classifies {'transcripts' if self.is_text else 'speech'} into {len(self.labels)} emotion categories",
            "attributes": f"predicts the emotional attributes {', '.join(self.attributes)}",
            "multitask": f"classifies emotion into {len(self.labels)} categories and predicts {', '.join(self.attributes)}",
        }[self.task]
        trained_on = f" It was trained on {', '.join(_dataset_name(d) for d in self.datasets)}." if self.datasets else ""
        return (
            f"A {self._modality} emotion recognition model built with `{LIBRARY_NAME}`: it {what}."
            f"{trained_on} Backbone: {self.backbone}."
        )

    def _outputs_section(self) -> str:
        parts = []
        if self.labels:
            rows = [(str(i), code, name) for i, (code, name) in enumerate(self.labels)]
            parts.append(
                "Categorical output: one probability per class (softmax of the logits); the predicted label is "
                "the most probable class. `config.id2label` holds the readable names.\n\n"
                + _table(["Id", "Code", "Emotion"], rows)
            )
        if self.attributes:
            low, high = self.attribute_range
            rows = [(name, f"{low:g} to {high:g}", _ATTRIBUTE_MEANING.get(name, "")) for name in self.attributes]
            parts.append(
                f"Attribute output: one value per attribute on the corpus scale ({low:g} to {high:g}). The head "
                "predicts on [0, 1] and the model maps it back to this scale (`outputs.attributes`).\n\n"
                + _table(["Attribute", "Scale", "Meaning"], rows)
            )
        return "## Outputs\n\n" + "\n\n".join(parts)

    def _training_section(self) -> str:
        if not self.training and not self.finetuning:
            return "## Training\n\nNo training arguments were recorded with this card."
        rows = list(self.training.items()) + list(self.finetuning.items())
        return _table_section("Training", ["Strategy", "Setting"], rows)

    def _results_section(self) -> str:
        if not self.results:
            return "## Evaluation results\n\nNo evaluation results were recorded with this card."
        splits = list(self.results)
        names = list(dict.fromkeys(k for m in self.results.values() for k in m))
        rows = [
            (_metric_info(name)[1], *(f"{self.results[s][name]:.4f}" if name in self.results[s] else "-" for s in splits))
            for name in names
        ]
        data = f" on {', '.join(_dataset_name(d) for d in self.datasets)}" if self.datasets else ""
        primary = "macro-F1" if self.labels else "mean CCC"
        return (
            f"## Evaluation results\n\nScores{data} per split; the primary score is {primary} "
            "(the Interspeech 2025 SER challenge's measure).\n\n" + _table(["Metric", *splits], rows)
        )

    def _usage_section(self) -> str:
        repo = self.repo_id or self.model_name
        blocks = []
        if self.lora:
            blocks.append(
                "This checkpoint holds LoRA adapters with the pooling and heads (the frozen base model is named in "
                "`adapter_config.json`). `ser_hf.finetuning.load_ser_model(path, merge=True)` returns a plain "
                "ser-hf model with the adapters merged; `predict` below does that for you."
            )
        elif self.labels and self.model_type == "ser_speech":
            blocks.append(
                "With the `transformers` pipeline (importing `ser_hf` registers its model classes and a pipeline that "
                "reads any sample rate or channel count without FFmpeg):\n\n"
                "```python\nimport ser_hf\nfrom transformers import pipeline\n\n"
                f'classifier = pipeline("audio-classification", model="{repo}")\n'
                'print(classifier("speech.wav", top_k=3))\n```\n\n'
                "Without ser-hf (torch and transformers only; the checkpoint ships its model code):\n\n"
                "```python\nimport soundfile as sf\nimport torch\n"
                "from transformers import AutoFeatureExtractor, AutoModelForAudioClassification\n\n"
                f'model = AutoModelForAudioClassification.from_pretrained("{repo}", trust_remote_code=True).eval()\n'
                f'extractor = AutoFeatureExtractor.from_pretrained("{repo}")\n'
                f'wave, rate = sf.read("speech.wav", dtype="float32")  # mono, {self.sampling_rate} Hz\n'
                "with torch.no_grad():\n"
                f"    logits = model(**extractor(wave, sampling_rate={self.sampling_rate}, return_tensors=\"pt\")).logits\n"
                "print(model.config.id2label[int(logits.argmax())])\n```"
            )
        elif self.labels and self.is_text:
            blocks.append(
                "With the `transformers` pipeline (importing `ser_hf` registers its model classes):\n\n"
                "```python\nimport ser_hf\nfrom transformers import pipeline\n\n"
                f'classifier = pipeline("text-classification", model="{repo}")\n'
                'print(classifier("I cannot believe this happened!", top_k=3))\n```'
            )
        # What else predict needs: a transcript source for models that read text, the two feature models for a fusion head.
        extra: list[tuple[str, str]] = []
        if self.model_type == "ser_fusion":
            extra += [("speech_model", "path/to/fine-tuned-speech-model"), ("text_model", "path/to/fine-tuned-text-model")]
        if self.model_type != "ser_speech":
            extra.append(("transcripts", "transcripts.csv"))  # or asr_model="openai/whisper-large-v3"
        call = "".join(f', {key}="{value}"' for key, value in extra)
        flags = "".join(f" --{key} {value}" for key, value in extra)
        blocks.append(
            "For recordings of any length, sample rate and channel count (long files are cut into overlapping "
            "windows; per-window and per-file results"
            + ("; transcripts come from a CSV/JSON of file id -> text, or from an ASR model with `asr_model=`" if extra else "")
            + "):\n\n```python\nfrom ser_hf.inference import predict\n\n"
            f'results = predict("{repo}", ["recording.wav"]{call})\nprint(results.files[0])\n```\n\n'
            f"or from the shell: `ser-hf predict {repo} recording.wav{flags} --output_dir predictions`"
        )
        install = "```bash\npip install ser-hf" + ("  # peft comes with it" if self.lora else "") + "\n```"
        return "## How to use\n\nInstall:\n\n" + install + "\n\n" + "\n\n".join(blocks)

    def _limitations_section(self) -> str:
        lines = [
            "Intended use: research on emotion recognition and analysis of emotional expression in recordings, "
            "aggregated over many utterances. Not intended for decisions about individuals (hiring, credit, "
            "policing, health) or for inferring a person's inner state: the model predicts how an utterance is "
            "*perceived* by annotators, which is not what the speaker feels."
        ]
        for dataset_id in self.datasets:
            facts = KNOWN_DATASETS.get(dataset_id)
            if facts is None:
                continue
            if facts.kind == "acted":
                lines.append(
                    f"- {facts.name} is acted speech ({facts.description}): expressions are exaggerated and "
                    "recorded in clean conditions, so expect much lower accuracy on natural, in-the-wild speech."
                )
            elif facts.kind == "in-the-wild":
                lines.append(
                    f"- {facts.name} is in-the-wild speech ({facts.description}); its class distribution is highly "
                    "imbalanced (neutral dominates), and rare classes are recognised less reliably."
                )
            else:
                lines.append(f"- {facts.name}: {facts.description}. Its predictions on real speech are meaningless.")
        if self.language:
            lines.append(
                f"- Language: trained on {', '.join(_LANGUAGES.get(c, c) for c in self.language)} "
                f"{'text' if self.is_text else 'speech'}; performance on other languages and accents is unknown."
            )
        lines.append(
            "- Bias: emotion perception depends on culture, language, gender and age; corpora cover few speakers "
            "and annotators, so errors are likely uneven across groups. Evaluate on your own population first."
        )
        lines.append(
            "- Inputs: emotion is judged from short segments (the training crop length); for long recordings the "
            "per-window results vary over time, and the per-file label is an average."
        )
        return "## Intended use and limitations\n\n" + lines[0] + "\n\n" + "\n".join(lines[1:])


def framework_versions() -> dict[str, str]:
    """Versions of the packages a checkpoint depends on, for the card."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("ser-hf", "transformers", "torch", "datasets", "peft", "accelerate", "huggingface_hub"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    import platform

    found["Python"] = platform.python_version()
    return found


def is_hub_dataset_id(name: str) -> bool:
    """A name the Hub's ``datasets`` metadata accepts: ``owner/name`` (not a local corpus name or path)."""
    if not name or name in KNOWN_DATASETS or os.path.isabs(name) or name.startswith((".", "~")):
        return False
    parts = name.split("/")
    return len(parts) == 2 and all(re.fullmatch(r"[\w.-]+", p) for p in parts)


def _portable_dataset_name(name: str) -> str:
    """A local dataset folder/file is named by its last component: a path on this machine means nothing elsewhere."""
    name = os.fspath(name)
    if os.path.isabs(name) or os.path.exists(name):
        return os.path.basename(os.path.normpath(name))
    return name


def _task_tags(task: str) -> list[str]:
    return {"categorical": ["categorical-emotion"], "attributes": ["dimensional-emotion", "regression"]}.get(
        task, ["categorical-emotion", "dimensional-emotion", "multi-task"]
    )


def _dataset_name(dataset_id: str) -> str:
    return KNOWN_DATASETS[dataset_id].name if dataset_id in KNOWN_DATASETS else dataset_id


def _describe_backbone(config) -> tuple[str, str]:
    """(short name, one-line detail) of the encoder(s)."""
    if _get(config, "input_sizes"):  # late fusion: a head on cached features
        blocks = ", ".join(f"{name} {size}-dim" for name, size in _get(config, "input_sizes"))
        return "fusion head", (
            f"head on the concatenated pooled vectors of separately fine-tuned models ({blocks}); "
            "those models are not part of this checkpoint"
        )
    parts = {which: _get(config, f"{which}_config") for which in ("speech", "text")}
    if all(parts.values()):  # joint model: both encoders inside
        described = {which: _describe_backbone(part) for which, part in parts.items()}
        return " + ".join(d[0] for d in described.values()), "joint model; " + "; ".join(
            f"{which}: {d[1]}" for which, d in described.items()
        )
    backbone = _get(config, "backbone_config", None) or {}
    kind = backbone.get("model_type", "unknown")
    name = _get(config, "backbone_name_or_path", None)
    layers = backbone.get("num_hidden_layers", backbone.get("encoder_layers"))
    hidden = backbone.get("hidden_size", backbone.get("d_model"))
    size = f"{layers} layers, hidden size {hidden}" if layers and hidden else ""
    if name:
        return name, f"`{name}` ({kind}{', ' + size if size else ''}), fine-tuned"
    return f"randomly initialised {kind}", f"{kind} initialised from a config ({size or 'custom size'}), no pretrained weights"


def _describe_architecture(config) -> dict[str, str]:
    rows: dict[str, str] = {}
    if _get(config, "sampling_rate") is not None:
        rows["Input"] = f"mono audio at {_get(config, 'sampling_rate')} Hz, crops of {_format(_get(config, 'max_audio_seconds'))} s"
    if _get(config, "max_length") is not None:
        rows["Input"] = f"transcripts, up to {_get(config, 'max_length')} tokens"
    normalization = _get(config, "input_normalization", "none")
    if normalization not in (None, "none"):
        rows["Input normalisation"] = {
            "utterance": "log-mel per utterance (mean and std per mel bin)",
            "speaker": "log-mel per speaker (mean and std per mel bin over all of a speaker's utterances; "
            "a recording scored alone uses its own)",
        }.get(normalization, normalization)
    if _get(config, "layer_weighting") is not None:
        rows["Layers used"] = {"last": "last hidden state", "weighted_sum": "learned weighted sum of all layers"}.get(
            _get(config, "layer_weighting"), _get(config, "layer_weighting")
        )
    if _get(config, "pooling") is not None:
        rows["Pooling"] = {"attentive_stats": "attentive statistics (mean and std under learned attention)", "stats": "statistics (mean and std)", "mean": "masked mean"}.get(
            _get(config, "pooling"), _get(config, "pooling")
        )
    rows["Head"] = (
        f"dropout {_format(_get(config, 'head_dropout', 0.1))}, linear {_get(config, 'head_hidden_size', 256)}, "
        f"LayerNorm, {_get(config, 'activation', 'mish')} activation, linear"
    )
    return rows


def _describe_training(args, task: str, state=None) -> dict[str, str]:
    if args is None:
        return {}
    rows: dict[str, str] = {}
    categorical = task in ("categorical", "multitask")
    if categorical and _get(args, "loss") is not None:
        loss = _get(args, "loss")
        text = _LOSSES.get(loss, loss)
        if loss == "focal":
            text += f" (gamma = {_format(_get(args, 'focal_gamma'))})"
        rows["Categorical loss"] = text
        rows["Class weighting"] = _WEIGHTINGS.get(_get(args, "class_weighting"), _format(_get(args, "class_weighting")))
        rows["Sampler"] = _SAMPLERS.get(_get(args, "sampler"), _format(_get(args, "sampler")))
    if task in ("attributes", "multitask") and _get(args, "attribute_loss") is not None:
        text = _LOSSES.get(_get(args, "attribute_loss"), _get(args, "attribute_loss"))
        if _get(args, "attribute_loss_weights"):
            text += f", weights {_format(_get(args, 'attribute_loss_weights'))}"
        rows["Attribute loss"] = text
    if task == "multitask":
        rows["Loss weights"] = (
            f"categorical {_format(_get(args, 'categorical_loss_weight'))}, attributes {_format(_get(args, 'attribute_loss_weight'))}"
        )
    lr = _get(args, "learning_rate")
    if lr is not None:
        head = _get(args, "head_learning_rate") or lr
        rows["Learning rates"] = (
            f"backbone {_format(_get(args, 'backbone_learning_rate') or lr)}, "
            f"pooling {_format(_get(args, 'pooling_learning_rate') or head)}, head {_format(head)}"
        )
    max_steps = _get(args, "max_steps")
    if max_steps is not None and max_steps > 0:
        rows["Training budget"] = f"{max_steps} optimizer steps (max_steps; overrides the epoch count)"
    elif _get(args, "num_train_epochs") is not None:
        rows["Training budget"] = f"{_format(_get(args, 'num_train_epochs'))} epochs"
    if state is not None:  # what actually ran (a run may stop early or be cut by max_steps)
        rows["Epochs run"] = f"{float(_get(state, 'epoch') or 0.0):.3g}"
        rows["Optimizer steps run"] = str(int(_get(state, "global_step") or 0))
    optimizer = _get(args, "optim")
    if optimizer is not None:
        optimizer = getattr(optimizer, "value", optimizer)
        rows["Optimizer"] = f"{optimizer}, weight decay {_format(_get(args, 'weight_decay', 0.0))}"
    scheduler = _get(args, "lr_scheduler_type")
    if scheduler is not None:
        scheduler = getattr(scheduler, "value", scheduler)
        warmup_steps, warmup_ratio = _get(args, "warmup_steps", 0) or 0, _get(args, "warmup_ratio", 0) or 0
        warmup = (f"{_format(warmup_steps)} warm-up steps" if warmup_steps
                  else f"warm-up over {_format(warmup_ratio)} of the steps" if warmup_ratio else "no warm-up")
        rows["Learning-rate schedule"] = f"{scheduler}, {warmup}"
    for name, label in (
        ("per_device_train_batch_size", "Batch size per device"),
        ("gradient_accumulation_steps", "Gradient accumulation steps"),
        ("max_audio_seconds", "Training crop (s)"),
        ("group_by_length", "Length-grouped batches"),
        ("seed", "Seed"),
    ):
        value = _get(args, name)
        if value is None or (name == "gradient_accumulation_steps" and value == 1):
            continue
        rows[label] = _format(value)
    return rows


_POLICIES = {
    "full": "full fine-tuning (every encoder weight trains)",
    "frozen_backbone": "frozen encoder: only pooling and heads train",
    "freeze_feature_encoder": "CNN feature encoder frozen, transformer layers fine-tuned",
    "freeze_bottom_layers": "feature encoder, embeddings and the lowest {n} transformer layers frozen",
}
# Fields described by `_describe_finetuning` itself; any other matching field is listed as it is.
_DESCRIBED = {"finetuning_policy", "freeze_bottom_layers", "use_lora", "lora_r", "lora_alpha", "lora_dropout",
              "lora_target_modules", "freeze_feature_encoder", "gradient_checkpointing", "gradient_checkpointing_kwargs",
              "activation_checkpointing", "activation_checkpointing_kwargs"}


def _describe_finetuning(config, args, trainable_parameters) -> dict[str, str]:
    """Which encoder weights trained: the policy, LoRA settings, gradient checkpointing, trainable share."""
    rows: dict[str, str] = {}
    policy = _get(args, "finetuning_policy")
    if _get(args, "use_lora"):
        rows["Fine-tuning policy"] = "LoRA: encoder weights frozen, low-rank adapters train"
    elif policy is not None:
        rows["Fine-tuning policy"] = _POLICIES.get(policy, policy).format(n=_get(args, "freeze_bottom_layers"))
    elif _get(config, "freeze_feature_encoder") is not None:
        rows["Fine-tuning policy"] = (
            _POLICIES["freeze_feature_encoder"] if _get(config, "freeze_feature_encoder") else _POLICIES["full"]
        )
    if _get(args, "use_lora"):
        targets = _get(args, "lora_target_modules")
        rows["LoRA adapters"] = (
            f"rank {_get(args, 'lora_r')}, alpha {_format(_get(args, 'lora_alpha'))}, dropout {_format(_get(args, 'lora_dropout'))}, "
            f"target modules {_format(targets) if targets else 'the encoder family default'}; pooling and heads fully trained"
        )
    if _get(args, "activation_checkpointing") or _get(args, "gradient_checkpointing"):
        rows["Gradient checkpointing"] = "on"
    for source in (config, args):
        for name, value in sorted(_fields(source).items()):
            if name in _DESCRIBED or name.startswith("_") or not _FINETUNING_FIELD.search(name):
                continue
            if value is None or isinstance(value, (dict, set)):
                continue
            rows.setdefault(name.replace("_", " ").capitalize(), _format(value))
    if trainable_parameters is not None:
        trainable, total = trainable_parameters
        rows["Trainable parameters"] = f"{trainable:,} of {total:,} ({100 * trainable / max(total, 1):.2f}%)"
    return rows


def _table(header: list[str], rows) -> str:
    clean = lambda cell: str(cell).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _table_section(title: str, header: list[str], rows) -> str:
    return f"## {title}\n\n" + _table(header, rows)


# ---------------------------------------------------------------------------------------------- API
def generate_model_card(
    model_config,
    training_args=None,
    eval_results: dict | None = None,
    datasets: str | list[str] | None = None,
    **kwargs,
) -> str:
    """README.md text for a ser-hf model (metadata + body). ``kwargs`` go to `SERModelCardData.from_config`
    (``model_name``, ``repo_id``, ``language``, ``license``, ``tags``, ``base_model``, ``trainable_parameters``)."""
    return SERModelCardData.from_config(model_config, training_args, eval_results, datasets, **kwargs).render()


def write_model_card(output_dir: str | os.PathLike, model_config, **kwargs) -> str:
    """Write ``README.md`` into ``output_dir`` atomically; returns its path."""
    path = os.path.join(os.fspath(output_dir), "README.md")
    write_text_atomic(path, generate_model_card(model_config, **kwargs))
    return path


def results_from_log_history(log_history: list[dict]) -> dict[str, dict[str, float]]:
    """The latest logged scores per split prefix (``eval_``, ``test_``, ...) from ``trainer.state.log_history``."""
    latest: dict[str, dict[str, float]] = {}
    for entry in log_history:
        for key, value in entry.items():
            prefix, _, name = key.partition("_")
            if name and _METRIC_KEY.match(name) and isinstance(value, (int, float)):
                latest.setdefault(prefix, {})[name] = float(value)
    return latest


def write_trainer_model_card(
    trainer,
    *,
    model_name: str | None = None,
    language: str | list[str] | None = None,
    license: str | None = None,
    tags: str | list[str] | None = None,
    finetuned_from: str | None = None,
    dataset_tags: str | list[str] | None = None,
    dataset: str | list[str] | None = None,
    eval_results: dict | None = None,
) -> str:
    """The card for a `SERTrainer`'s model, arguments and logged evaluations, in ``args.output_dir``.

    Takes the keyword arguments of `Trainer.create_model_card` that a SER card uses (``tasks`` and
    ``dataset_args`` are not: the task comes from the model config). ``dataset_tags`` are corpus or Hub
    dataset ids such as ``msp_podcast``; ``dataset`` is used when they are absent. ``eval_results``
    overrides the scores found in the trainer's log history.
    """
    from ser_hf.modeling.parameters import count_parameters

    model = trainer.accelerator.unwrap_model(trainer.model)
    results = eval_results if eval_results is not None else results_from_log_history(trainer.state.log_history)
    return write_model_card(
        trainer.args.output_dir,
        model.config,
        training_args=trainer.args,
        eval_results=results,
        datasets=dataset_tags or dataset,
        model_name=model_name or os.path.basename(os.path.abspath(trainer.args.output_dir)),
        repo_id=getattr(trainer, "hub_model_id", None) or trainer.args.hub_model_id,
        language=language,
        license=license,
        tags=tags,
        base_model=finetuned_from,
        trainable_parameters=count_parameters(model),
        train_state=trainer.state if trainer.state.global_step else None,
    )


__all__ = [
    "KNOWN_DATASETS",
    "SERModelCardData",
    "framework_versions",
    "generate_model_card",
    "is_hub_dataset_id",
    "normalize_results",
    "results_from_log_history",
    "write_model_card",
    "write_trainer_model_card",
]
