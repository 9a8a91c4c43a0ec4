"""Emotion predictions for recordings of any length, format, sample rate and channel count.

A trained model sees crops of ``max_audio_seconds``; a podcast episode or a call is much longer, so
recordings are cut into overlapping windows, each window is classified, and the windows are
averaged (weighted by their duration) into one result per file. Files are *streamed*: read in blocks
with soundfile, mixed to mono and resampled block by block with soxr's streaming resampler (which
gives the same samples as resampling the whole file), so memory stays flat however long the file
is; only the small per-window results are kept.

Text models classify transcripts: one per file from a transcripts file, or one per window from an
ASR pipeline. Joint models (`SERJointModel`) and late-fusion heads (`SERFusionModel`, given the
fine-tuned speech and text models whose pooled vectors they read) pair each audio window with its
text: the file's transcript, or the window's ASR output.
"""
from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import soundfile as sf
import torch

from ser_hf.data.audio import AudioError, _open_or_none, _require_file, audio_info, load_audio
from ser_hf.data.audio import window_bounds  # noqa: F401  (re-exported: predict's windows)
from ser_hf.errors import ConfigError

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
# Frames read from the file per step; a few hundred KB whatever the file's length.
BLOCK_FRAMES = 65536
# Windows of a text model fed by ASR: Whisper-sized, and not overlapping, so words are not repeated.
DEFAULT_ASR_WINDOW_SECONDS = 30.0


# ---------------------------------------------------------------------------------------------- files
def find_audio_files(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """Files as given plus, for each directory, every audio file below it (sorted, recursive)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[str] = []
    for path in map(os.fspath, paths):
        if os.path.isdir(path):
            inside = [
                os.path.join(root, name)
                for root, _, names in os.walk(path)
                for name in names
                if name.lower().endswith(AUDIO_EXTENSIONS) and not name.startswith(".")
            ]
            if not inside:
                raise ValueError(f"{path}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this directory")
            found.extend(sorted(inside))
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise AudioError(path, "no such file or directory")
    if not found:
        raise ValueError("no input files given")
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------------------------------------- audio
def stream_mono(path, sampling_rate: int, block_frames: int | None = None) -> Iterator[np.ndarray]:
    """The file as consecutive float32 mono blocks at ``sampling_rate``, never decoded whole.

    Channels are averaged, then soxr's streaming resampler is applied (the same operations, in the
    same order, as `load_audio`). Formats libsndfile cannot read fall back to a full decode.
    """
    import soxr

    block_frames = block_frames or BLOCK_FRAMES
    path = _require_file(path)
    handle = _open_or_none(path)
    if handle is None:
        logger.warning("%s: not a libsndfile format; decoding it whole (memory grows with its length)", path)
        yield load_audio(path, sampling_rate)
        return
    with handle:
        rate = int(handle.samplerate)
        resampler = soxr.ResampleStream(rate, sampling_rate, 1, dtype="float32") if rate != sampling_rate else None
        any_frames = False
        while True:
            try:
                block = handle.read(block_frames, dtype="float32", always_2d=True)
            except sf.LibsndfileError as exc:
                raise AudioError(path, f"corrupt audio data ({exc})") from exc
            if len(block) == 0:
                break
            any_frames = True
            mono = block.mean(axis=1)
            if not np.isfinite(mono).all():
                raise AudioError(path, "audio contains NaN or infinite samples")
            out = resampler.resample_chunk(mono) if resampler is not None else mono
            if len(out):
                yield out
        if not any_frames:
            raise AudioError(path, "empty audio (0 frames)")
        if resampler is not None:
            tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if len(tail):
                yield tail


class Window(NamedTuple):
    start: int  # samples at the model's rate
    end: int
    wave: np.ndarray


def stream_windows(blocks: Iterable[np.ndarray], window: int, hop: int) -> Iterator[Window]:
    """Cut a stream of sample blocks into the windows of `window_bounds`, holding at most about one
    window plus one block of samples."""
    if not 0 < hop <= window:
        raise ValueError(f"need 0 < hop <= window (no audio skipped), got hop={hop}, window={window} samples")
    buffer = np.zeros(0, dtype=np.float32)
    offset = 0  # sample index of buffer[0]
    next_start = 0
    last_end = 0
    for block in blocks:
        buffer = np.concatenate([buffer, block.astype(np.float32, copy=False)])
        while offset + len(buffer) >= next_start + window:
            begin = next_start - offset
            yield Window(next_start, next_start + window, buffer[begin : begin + window].copy())
            last_end = next_start + window
            next_start += hop
        # Keep what the next window needs, and always the last `window` samples for the end-aligned one.
        keep_from = max(offset, min(next_start, offset + len(buffer) - window))
        buffer = buffer[keep_from - offset :]
        offset = keep_from
    total = offset + len(buffer)
    if total == 0:
        return
    if last_end == 0:
        yield Window(0, total, buffer.copy())
    elif last_end < total:
        yield Window(total - window, total, buffer[len(buffer) - window :].copy())


# ---------------------------------------------------------------------------------------------- models
def load_model(model_or_path, processor=None, device: str | torch.device | None = None, backend: str = "auto"):
    """(model, processor) on ``device`` in eval mode, from a checkpoint folder or a model object.

    Speech and text models come with their feature extractor or tokenizer; a joint model with a
    ``(feature_extractor, tokenizer)`` pair; a fusion head with ``None`` (it reads features).
    ``backend``: ``"torch"``, ``"onnx"`` (a folder written by ``ser-hf export``, run by
    onnxruntime) or ``"auto"`` (onnx for an export folder, torch otherwise).
    """
    from ser_hf.export.onnx import is_onnx_export
    from ser_hf.modeling import SERFusionModel, SERJointModel, SERModelForSpeech, SERModelForText

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    path = os.fspath(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else None
    onnx_folder = path is not None and is_onnx_export(path)
    if backend == "onnx" or (backend == "auto" and onnx_folder):
        if path is None or not onnx_folder:
            raise ConfigError(f"backend='onnx' needs a folder written by `ser-hf export --format onnx`, got {model_or_path!r}")
        from ser_hf.export.onnx_runtime import ORTSERModel

        model = ORTSERModel(path)
        if processor is None:
            processor = _processor_for(model, path)
        return model.to(device or "cpu"), processor
    if path is not None:
        from ser_hf.finetuning import ADAPTER_CONFIG_NAME, load_ser_model

        if not any(os.path.isfile(os.path.join(path, name)) for name in ("config.json", ADAPTER_CONFIG_NAME)):
            raise ConfigError(f"{path}: no config.json or {ADAPTER_CONFIG_NAME}; give a saved ser-hf checkpoint folder")
        if onnx_folder:
            raise ConfigError(f"{path} is an ONNX export (no PyTorch weights); use backend='onnx'")
        model = load_ser_model(path, merge=True)  # a LoRA checkpoint comes back with its adapters merged
        kinds = (SERModelForSpeech, SERModelForText, SERFusionModel, SERJointModel)
        if not isinstance(model, kinds):
            raise ValueError(f"{path}: not a ser-hf model ({type(model).__name__}; expected one of {[k.__name__ for k in kinds]})")
    else:
        model = model_or_path
    if processor is None:
        processor = _processor_for(model, path)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return model.to(device).eval(), processor


BACKENDS = ("auto", "torch", "onnx")


def _device_of(model) -> torch.device:
    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else next(model.parameters()).device


def _processor_for(model, path: str | None):
    """The processor saved with a checkpoint; for speech encoders the default one when none was saved."""
    from transformers import AutoFeatureExtractor, AutoTokenizer

    from ser_hf.export.onnx import model_kind
    from ser_hf.modeling import build_feature_extractor

    def extractor(config):
        if path is not None and os.path.isfile(os.path.join(path, "preprocessor_config.json")):
            return AutoFeatureExtractor.from_pretrained(path)
        logger.warning("%s has no preprocessor_config.json; using the default feature extractor for its encoder", path or "model")
        return build_feature_extractor(config)

    def tokenizer():
        if path is None:
            raise ValueError("a text or joint model object needs its tokenizer: pass processor=")
        try:
            return AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: no tokenizer saved with this text model ({exc})") from exc

    kind = model_kind(model)
    if kind == "speech":
        return extractor(model.config)
    if kind == "text":
        return tokenizer()
    if kind == "joint":
        return extractor(model.speech.config), tokenizer()
    return None


def _speech_inputs(extractor, waves: list[np.ndarray], rate: int, device) -> dict[str, torch.Tensor]:
    from ser_hf.data.collators import _is_whisper

    inputs = extractor(
        waves,
        sampling_rate=rate,
        padding="max_length" if _is_whisper(extractor) else True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    return {k: v.to(device) for k, v in inputs.items()}


def _text_inputs(tokenizer, texts: list[str], max_length: int, device) -> dict[str, torch.Tensor]:
    inputs = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {k: v.to(device) for k, v in inputs.items()}


@dataclass
class _Predictor:
    """How to turn a batch of windows (audio and/or text) into outputs, for one kind of model."""

    config: Any  # config of the model whose heads give the outputs
    needs_audio: bool
    needs_text: bool
    sampling_rate: int | None  # audio rate the model reads
    speech_config: Any  # for the default window (max_audio_seconds) and Whisper's limit
    extractor: Any
    prepare: Any  # batch -> model inputs on the CPU (feature extraction/tokenisation; runs in DataLoader workers)
    forward: Any  # model inputs -> SEROutput (moves them to the model's device)

    def __call__(self, batch: list["_Item"]) -> tuple[np.ndarray | None, np.ndarray | None]:
        return self.run(self.prepare(batch))

    def run(self, inputs) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(class probabilities, attributes on the corpus scale) for prepared inputs."""
        with torch.inference_mode():
            output = self.forward(inputs)
        probabilities = torch.softmax(output.logits.float(), dim=-1).cpu().numpy() if output.logits is not None else None
        attributes = output.attributes.float().cpu().numpy() if output.attributes is not None else None
        return probabilities, attributes


def build_predictor(model_or_path, processor=None, device=None, speech_model=None, text_model=None, backend: str = "auto") -> _Predictor:
    """The model (plus, for a fusion head, the speech and text models whose pooled vectors it reads)."""
    from ser_hf.export.onnx import model_kind

    model, processor = load_model(model_or_path, processor, device, backend)
    device = _device_of(model)
    kind = model_kind(model)
    if kind == "fusion":
        return _fusion_predictor(model, speech_model, text_model, device, backend)
    if speech_model is not None or text_model is not None:
        raise ValueError("speech_model/text_model are for fusion heads (SERFusionModel); this model reads its input itself")
    on_device = lambda inputs: {k: v.to(device) for k, v in inputs.items()}  # noqa: E731
    if kind == "speech":
        rate = model.config.sampling_rate
        return _Predictor(
            model.config, True, False, rate, model.config, processor,
            lambda batch: _speech_inputs(processor, [i.wave for i in batch], rate, "cpu"),
            lambda inputs: model(**on_device(inputs)),
        )
    if kind == "joint":
        extractor, tokenizer = processor
        rate = model.speech.config.sampling_rate

        def prepare_joint(batch):
            text = _text_inputs(tokenizer, [i.text for i in batch], model.text.config.max_length, "cpu")
            text["text_attention_mask"] = text.pop("attention_mask")
            return {**_speech_inputs(extractor, [i.wave for i in batch], rate, "cpu"), **text}

        return _Predictor(
            model.config, True, True, rate, model.speech.config, extractor, prepare_joint, lambda inputs: model(**on_device(inputs))
        )
    return _Predictor(
        model.config, False, True, None, None, None,
        lambda batch: _text_inputs(processor, [i.text for i in batch], model.config.max_length, "cpu"),
        lambda inputs: model(**on_device(inputs)),
    )


@dataclass
class _EnsemblePredictor(_Predictor):
    """Several models on the same windows: each prepares its own inputs, their outputs are combined
    by ``method`` (mean of probabilities and attributes, or majority vote; `ser_hf.evaluation.ensemble`)."""

    members: list[_Predictor] = field(default_factory=list)
    method: str = "mean"

    def run(self, inputs) -> tuple[np.ndarray | None, np.ndarray | None]:
        from ser_hf.evaluation.ensemble import combine
        from ser_hf.evaluation.report import Predictions

        outputs = [member.run(member_inputs) for member, member_inputs in zip(self.members, inputs)]
        combined = combine(self.method, [
            Predictions(logits=None if p is None else np.log(np.clip(p, 1e-12, None)), attributes=a) for p, a in outputs
        ])
        probabilities = combined.probabilities.astype(np.float32) if combined.logits is not None else None
        attributes = combined.attributes.astype(np.float32) if combined.attributes is not None else None
        return probabilities, attributes


ENSEMBLE_METHODS = ("mean", "vote")


def build_ensemble_predictor(model_paths, method: str = "mean", device=None, backend: str = "auto") -> _EnsemblePredictor:
    """One predictor over several checkpoints (seeds, folds) that predict the same classes/attributes.

    ``method``: ``mean`` (class probabilities and attributes averaged) or ``vote`` (each model votes its
    top class; the written probabilities are the vote shares, ties broken by the mean probability)."""
    from ser_hf.evaluation.ensemble import check_compatible

    if method not in ENSEMBLE_METHODS:
        raise ValueError(f"ensemble method for prediction must be one of {', '.join(ENSEMBLE_METHODS)}, got {method!r}")
    names = [os.fspath(p) for p in model_paths]
    if len(names) < 2:
        raise ValueError("an ensemble needs at least two models")
    members = [build_predictor(path, None, device, None, None, backend) for path in names]
    check_compatible([m.config for m in members], names)
    first = members[0]
    for name, member in zip(names[1:], members[1:]):
        if (member.needs_audio, member.needs_text) != (first.needs_audio, first.needs_text):
            raise ValueError(f"{name} reads different inputs (audio/text) than {names[0]}; ensemble members must read the same")
        if member.sampling_rate != first.sampling_rate:
            raise ValueError(f"{name} reads audio at {member.sampling_rate} Hz, {names[0]} at {first.sampling_rate} Hz")
    # The window default and Whisper's input limit: the most restrictive member decides.
    whisper = [m for m in members if m.speech_config is not None and m.speech_config.is_whisper]
    window_source = min(whisper, key=lambda m: m.extractor.n_samples) if whisper else first
    return _EnsemblePredictor(
        first.config, first.needs_audio, first.needs_text, first.sampling_rate, window_source.speech_config,
        window_source.extractor, lambda batch: [m.prepare(batch) for m in members], None, members=members, method=method,
    )


def _fusion_predictor(model, speech_model, text_model, device, backend: str = "auto") -> _Predictor:
    """Late fusion: the speech and text models' pooled vectors, concatenated, into the fusion head."""
    blocks = model.config.blocks
    unknown = [name for name in blocks if name not in ("audio", "text")]
    if unknown:
        raise ValueError(f"fusion blocks {unknown}: predict can compute only 'audio' and 'text' features")
    from ser_hf.export.onnx import model_kind

    parts = {}
    kinds = {"audio": "speech", "text": "text"}
    for name, given, flag in (("audio", speech_model, "speech_model"), ("text", text_model, "text_model")):
        if name not in blocks:
            if given is not None:
                raise ValueError(f"{flag} given, but the fusion head has no {name!r} block (blocks {blocks})")
            continue
        if given is None:
            raise ValueError(
                f"this fusion head reads {name!r} features: pass {flag}= (the fine-tuned model they were extracted with)"
            )
        part, part_processor = load_model(*given, device, backend) if isinstance(given, tuple) else load_model(given, None, device, backend)
        if model_kind(part) != kinds[name]:
            expected = {"speech": "SERModelForSpeech", "text": "SERModelForText"}[kinds[name]]
            raise ValueError(f"{flag} must be a {expected} (a {kinds[name]} model), got a {model_kind(part)} model")
        width = part.pooled_size if hasattr(part, "pooled_size") else part.pooling.output_size
        if width != blocks[name]:
            raise ValueError(f"{flag} gives {width}-dim pooled vectors; the fusion head expects {blocks[name]} for {name!r}")
        parts[name] = (part, part_processor)
    speech = parts.get("audio")
    rate = speech[0].config.sampling_rate if speech else None

    def prepare(batch):
        inputs = {}
        if speech:
            inputs["audio"] = _speech_inputs(speech[1], [i.wave for i in batch], rate, "cpu")
        if "text" in parts:
            text, tokenizer = parts["text"]
            inputs["text"] = _text_inputs(tokenizer, [i.text for i in batch], text.config.max_length, "cpu")
        return inputs

    def fused(inputs):
        features = {}
        if speech:
            features["audio"] = speech[0].pool(**{k: v.to(device) for k, v in inputs["audio"].items()})
        if "text" in parts:
            features["text"] = parts["text"][0].pool(**{k: v.to(device) for k, v in inputs["text"].items()})
        return model(features=features)

    return _Predictor(
        model.config, speech is not None, "text" in parts, rate, speech[0].config if speech else None,
        speech[1] if speech else None, prepare, fused,
    )


# ---------------------------------------------------------------------------------------------- transcripts
def load_transcripts(path: str | os.PathLike) -> dict[str, str]:
    """``{id: text}`` from a JSON mapping, a JSON list of ``{id, text}`` or a CSV with id and text columns.

    The id may be a file's path, its name or its name without extension (see `transcript_for`).
    Column names accepted: id/file/path/audio and text/transcript.
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8") as handle:
        if path.lower().endswith(".json"):
            data = json.load(handle)
            rows = data.items() if isinstance(data, dict) else ((_pick(r, _ID_KEYS, path, i), _pick(r, _TEXT_KEYS, path, i)) for i, r in enumerate(data))
        else:
            reader = csv.DictReader(handle, delimiter="\t" if path.lower().endswith(".tsv") else ",")
            rows = [(_pick(r, _ID_KEYS, path, i + 2), _pick(r, _TEXT_KEYS, path, i + 2)) for i, r in enumerate(reader)]
        transcripts: dict[str, str] = {}
        for key, text in rows:
            if not isinstance(text, str):
                raise ValueError(f"{path}: transcript of {key!r} is not text ({text!r})")
            transcripts[str(key)] = text
    if not transcripts:
        raise ValueError(f"{path}: no transcripts")
    return transcripts


_ID_KEYS = ("id", "file", "path", "audio")
_TEXT_KEYS = ("text", "transcript")


def _pick(row: dict, keys: tuple[str, ...], path: str, where: int):
    if not isinstance(row, dict):
        raise ValueError(f"{path}: entry {where} is not an object with id and text ({row!r})")
    for key in keys:
        if row.get(key) not in (None, ""):
            return row[key]
    raise ValueError(f"{path}: row {where} has none of the columns {keys}")


def transcript_for(file: str, transcripts: dict[str, str]) -> str:
    """A file's transcript, looked up by path, absolute path, file name, then name without extension."""
    name = os.path.basename(file)
    for key in (file, os.path.abspath(file), name, os.path.splitext(name)[0]):
        if key in transcripts:
            return transcripts[key]
    raise ValueError(f"{file}: no transcript (looked up by path, file name and file name without extension)")


# ---------------------------------------------------------------------------------------------- results
@dataclass
class PredictionResults:
    """Per-window and per-file predictions.

    Window rows: ``file``, ``window`` (index), ``start``/``end`` (seconds), ``label``,
    ``probabilities`` ({class name: p}), ``attributes`` ({name: value on the corpus scale}) and
    ``text`` for text models. File rows: ``file``, ``duration``, ``num_windows`` and the same outputs
    averaged over the windows, weighted by window duration; the label is the most probable class of
    that average.
    """

    windows: list[dict] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # readable class names, in output order
    label_codes: list[str] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)
    attribute_range: tuple[float, float] | None = None
    window_seconds: float | None = None
    hop_seconds: float | None = None
    model: str = ""
    errors: list[dict] = field(default_factory=list)  # files skipped with on_error="skip"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "labels": dict(zip(self.label_codes, self.labels)),
            "attributes": self.attributes,
            "attribute_range": list(self.attribute_range) if self.attribute_range else None,
            "window_seconds": self.window_seconds,
            "hop_seconds": self.hop_seconds,
            "files": self.files,
            "windows": self.windows,
            "errors": self.errors,
        }

    def _flat(self, row: dict, keys: list[str]) -> list:
        probabilities = row.get("probabilities") or {}
        attributes = row.get("attributes") or {}
        cells = [row.get(k, "") for k in keys]
        cells += [_round(probabilities[name]) for name in self.labels]
        cells += [_round(attributes[name]) for name in self.attributes]
        return cells

    def _header(self, keys: list[str]) -> list[str]:
        return keys + [f"prob_{name}" for name in self.labels] + list(self.attributes)

    def write(self, output_dir: str | os.PathLike, *, timeline: bool = True, timeline_min_windows: int = 3) -> dict[str, str]:
        """``windows.csv``, ``files.csv``, ``predictions.json`` and, for files with at least
        ``timeline_min_windows`` windows, ``timelines/<name>.png``, published as one set: readers
        see the previous set or this one, never a mix (see `ser_hf.prediction_output`)."""
        from ser_hf.prediction_output import locked_output_dir

        with locked_output_dir(output_dir) as folder:
            return self._publish(folder, timeline=timeline, timeline_min_windows=timeline_min_windows)

    def _publish(self, output_dir: str, *, timeline: bool = True, timeline_min_windows: int = 3) -> dict[str, str]:
        from ser_hf.prediction_output import publish

        publish(output_dir, lambda folder: self._write_files(folder, timeline, timeline_min_windows))
        names = {"windows_csv": "windows.csv", "files_csv": "files.csv", "json": "predictions.json"}
        return {key: os.path.join(output_dir, name) for key, name in names.items()}

    def _write_files(self, output_dir: str, timeline: bool, timeline_min_windows: int) -> list[str]:
        from ser_hf.io import write_csv_atomic, write_json_atomic

        names = []
        if timeline:
            self._write_timelines(output_dir, timeline_min_windows)
            names.append("timelines") if os.path.isdir(os.path.join(output_dir, "timelines")) else None
        window_text = ["text"] if any("text" in row for row in self.windows) else []
        file_text = ["text"] if any("text" in row for row in self.files) else []
        label = ["label"] if self.labels else []
        window_keys = ["file", "window", "start", "end", *label, *window_text]
        file_keys = ["file", "duration", "num_windows", *label, *(["timeline"] if timeline else []), *file_text]
        write_csv_atomic(os.path.join(output_dir, "windows.csv"), self._header(window_keys), (self._flat(r, window_keys) for r in self.windows))
        write_csv_atomic(os.path.join(output_dir, "files.csv"), self._header(file_keys), (self._flat(r, file_keys) for r in self.files))
        write_json_atomic(os.path.join(output_dir, "predictions.json"), self.to_dict())
        return names + ["windows.csv", "files.csv", "predictions.json"]

    def _write_timelines(self, output_dir: str, min_windows: int) -> None:
        used: set[str] = set()
        by_file: dict[str, list[dict]] = {}
        for row in self.windows:
            by_file.setdefault(row["file"], []).append(row)
        for row in self.files:
            if row["num_windows"] < min_windows:
                continue
            stem = os.path.splitext(os.path.basename(row["file"]))[0]
            name, n = stem, 1
            while name in used:
                n += 1
                name = f"{stem}-{n}"
            used.add(name)
            relative = os.path.join("timelines", f"{name}.png")
            plot_timeline(by_file[row["file"]], self, os.path.join(output_dir, relative), title=row["file"])
            row["timeline"] = relative


def _round(value: float) -> float:
    return round(float(value), 6)


def plot_timeline(windows: list[dict], results: PredictionResults, path: str, title: str = "") -> str:
    """Class probabilities and/or attributes of one file's windows against time (window centres)."""
    from ser_hf.plotting import new_figure, save_figure

    panels = (["probabilities"] if results.labels else []) + (["attributes"] if results.attributes else [])
    figure = new_figure(10.0, 3.0 * len(panels) + 0.5)
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    centres = np.array([(w["start"] + w["end"]) / 2 for w in windows])
    for ax, panel in zip(axes, panels):
        names = results.labels if panel == "probabilities" else results.attributes
        values = np.array([[w[panel][name] for name in names] for w in windows])
        for column, name in enumerate(names):
            ax.plot(centres, values[:, column], marker="o", markersize=3, label=name)
        low, high = (0.0, 1.0) if panel == "probabilities" else results.attribute_range
        if panel == "attributes":
            for limit in (low, high):
                ax.axhline(limit, color="0.6", linestyle="--", linewidth=0.8)
        # The scale's limits, widened when an (untrained or extrapolating) model goes beyond them.
        low, high = min(low, values.min()), max(high, values.max())
        margin = 0.03 * (high - low)
        ax.set_ylim(low - margin, high + margin)
        ax.set_ylabel("probability" if panel == "probabilities" else "attribute (corpus scale)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    axes[-1].set_xlabel("time (s, window centre)")
    axes[0].set_title(title, fontsize="medium")
    return save_figure(figure, path)


# ---------------------------------------------------------------------------------------------- predict
class _Item(NamedTuple):
    file_index: int
    start: float
    end: float
    wave: np.ndarray | None
    text: str | None
    text_per_window: bool  # ASR text of this window (reported per window) or the file's transcript


def predict(
    model_or_path,
    paths,
    *,
    window_seconds: float | None = None,
    hop_seconds: float | None = None,
    batch_size: int = 8,
    device: str | None = None,
    transcripts: str | os.PathLike | dict[str, str] | None = None,
    asr_model=None,
    processor=None,
    speech_model=None,
    text_model=None,
    output_dir: str | os.PathLike | None = None,
    timeline: bool = True,
    on_error: str = "raise",
    backend: str = "auto",
    num_workers: int | None = None,
    resume: bool = True,
    progress: bool = True,
    ensemble_method: str = "mean",
    same_speaker: bool = False,
) -> PredictionResults:
    """Predict emotions for audio files and directories (recursively: wav, flac, ogg, mp3).

    Args:
        model_or_path: a saved ser-hf checkpoint folder or a loaded model: speech, text, joint
            (speech + text end to end) or fusion head; or a *list* of checkpoint folders predicting the
            same classes/attributes, combined by ``ensemble_method`` (``mean`` or ``vote``, see
            `build_ensemble_predictor`).
        window_seconds: window length (default: the speech model's ``max_audio_seconds``; text
            models with ASR: 30 s). hop_seconds: step between windows (default: half a window; text
            models with ASR: a whole window, so words are not transcribed twice). 0 < hop <= window.
        transcripts: for models that read text, ``{id: text}`` or a CSV/JSON file (see
            `load_transcripts`). A text model then gives one prediction per file; a joint or fusion
            model pairs every audio window with the file's transcript.
        asr_model: instead of transcripts, an ASR model name/path or a callable taking
            ``{"raw": wave, "sampling_rate": sr}`` and returning ``{"text": ...}``; run on each window.
        processor: the model's feature extractor / tokenizer (default: the ones saved with it).
        speech_model, text_model: for a fusion head (`SERFusionModel`), the fine-tuned models (paths,
            objects or ``(model, processor)`` pairs) whose pooled vectors it was trained on.
        output_dir: when given, results are written there (see `PredictionResults.write`).
        on_error: ``"raise"`` stops at the first unreadable file or missing transcript; ``"skip"``
            records it in ``results.errors`` (and logs it) and carries on.
        backend: ``"torch"``, ``"onnx"`` (a ``ser-hf export`` folder run by onnxruntime; fusion parts
            too) or ``"auto"`` (onnx for export folders).
        num_workers: DataLoader workers that decode and feature-extract batches of short files while
            the model runs (default: one per spare core, at most 4; 0 decodes in this process).
            Short files (at most one window) are batched across files, longest first; longer files are
            streamed window by window.
        resume: with ``output_dir``, finished batches are journaled as they complete; a rerun with the
            same settings skips them and gives identical outputs (see `ser_hf.prediction_output`).
        progress: show a tqdm bar.
        same_speaker: the files are recordings of one speaker. A model trained with
            ``input_normalization: speaker`` then normalises them by their pooled log-mel statistics
            (as training and ``evaluate`` do per speaker) instead of its training population's;
            PyTorch backend, one model. See `ser_hf.data.speaker_statistics`.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    files = find_audio_files(paths)
    ensemble = isinstance(model_or_path, list)
    if ensemble:
        if processor is not None or speech_model is not None or text_model is not None:
            raise ValueError("an ensemble (a list of models) uses each checkpoint's own processor; fusion heads are not ensembled")
        if same_speaker:
            raise ConfigError("same_speaker normalises one speaker-normalised model; it does not apply to an ensemble")
        predictor = build_ensemble_predictor(model_or_path, ensemble_method, device, backend)
    elif same_speaker:
        model, processor = _with_speaker_statistics(model_or_path, processor, files, device, backend, window_seconds, on_error)
        predictor = build_predictor(model, processor, device, speech_model, text_model, backend)
    else:
        predictor = build_predictor(model_or_path, processor, device, speech_model, text_model, backend)
    config = predictor.config
    results = PredictionResults(
        labels=[config.id2label[i] for i in range(config.num_classes)] if config.has_categorical else [],
        label_codes=list(config.labels) if config.has_categorical else [],
        attributes=list(config.attributes) if config.has_attributes else [],
        attribute_range=tuple(config.attribute_range) if config.has_attributes else None,
        model=_model_name(model_or_path, ensemble_method),
    )
    asr = table = None
    if predictor.needs_text:
        if (transcripts is None) == (asr_model is None):
            raise ValueError("this model reads text: give exactly one of transcripts (file or mapping) or asr_model")
        table = None if transcripts is None else (transcripts if isinstance(transcripts, dict) else load_transcripts(transcripts))
        asr = None if asr_model is None else _asr_callable(asr_model, device)
    elif transcripts is not None or asr_model is not None:
        raise ValueError("transcripts/asr_model are for models that read text; this is a speech model")

    rate = None
    if predictor.needs_audio:
        rate = predictor.sampling_rate
        window_seconds = window_seconds or predictor.speech_config.max_audio_seconds
        hop_seconds = hop_seconds or window_seconds / 2
        if predictor.speech_config.is_whisper:
            limit = predictor.extractor.n_samples / rate
            if window_seconds > limit:
                raise ValueError(f"window_seconds={window_seconds} exceeds this Whisper model's input window of {limit:g} s")
        mode = "asr" if asr is not None else "audio"
    elif table is not None:
        if window_seconds is not None or hop_seconds is not None:
            raise ValueError("window_seconds/hop_seconds need asr_model: a transcripts file gives one text per file")
        mode = "transcripts"
    else:
        rate = _asr_sampling_rate(asr)
        window_seconds = window_seconds or DEFAULT_ASR_WINDOW_SECONDS
        hop_seconds = hop_seconds or window_seconds
        mode = "asr"
    if window_seconds is not None:
        window, hop = round(window_seconds * rate), round(hop_seconds * rate)
        if window <= 0 or not 0 < hop <= window:
            raise ValueError(f"need window_seconds > 0 and 0 < hop_seconds <= window_seconds, got {window_seconds}, {hop_seconds}")
    results.window_seconds, results.hop_seconds = window_seconds, hop_seconds
    context = _RunContext(
        files=files, mode=mode, predictor=predictor, rate=rate, window_seconds=window_seconds, hop_seconds=hop_seconds,
        transcripts=table, asr=asr, labels=results.labels, attributes=results.attributes, on_error=on_error,
        batch_size=batch_size,
    )
    units, plan_errors = _plan_units(context, batch_size)
    settings = {
        "model": [_fingerprint(m) for m in model_or_path] + [ensemble_method] if ensemble else _fingerprint(model_or_path),
        "speech_model": _fingerprint(speech_model), "text_model": _fingerprint(text_model),
        "backend": backend, "files": [os.path.abspath(f) for f in files], "mode": mode, "window_seconds": window_seconds,
        "hop_seconds": hop_seconds, "batch_size": batch_size, "transcripts": table, "asr_model": _fingerprint(asr_model),
        "on_error": on_error, "same_speaker": same_speaker,
    }
    if output_dir is None:
        entries = _run_units(context, units, {}, None, num_workers, progress)
        _assemble(results, context, entries, plan_errors)
        return results

    from ser_hf.prediction_output import Journal, locked_output_dir

    with locked_output_dir(output_dir) as folder:
        if not resume and os.path.exists(os.path.join(folder, ".journal.jsonl")):
            os.remove(os.path.join(folder, ".journal.jsonl"))
        journal = Journal(folder, settings)
        try:
            entries = _run_units(context, units, journal.done, journal, num_workers, progress)
        finally:
            journal.close(remove=False)
        _assemble(results, context, entries, plan_errors)
        results._publish(folder, timeline=timeline)
        journal.close(remove=True)
    return results


# ---------------------------------------------------------------------------------------------- batched, resumable runs
@dataclass
class _RunContext:
    files: list[str]
    mode: str  # "audio" (speech; joint/fusion with transcripts), "asr" (text from an ASR model), "transcripts" (text only)
    predictor: _Predictor
    rate: int | None
    window_seconds: float | None
    hop_seconds: float | None
    transcripts: dict[str, str] | None
    asr: Any
    labels: list[str]
    attributes: list[str]
    on_error: str
    batch_size: int


class _Unit(NamedTuple):
    """Work whose result is journaled as one line: a length-sorted batch of short files, decoded and
    feature-extracted by DataLoader workers (``streamed=False``), or one long file streamed in windows
    in the main process, so its memory stays flat (``streamed=True``)."""

    files: tuple[int, ...]
    streamed: bool


def _plan_units(context: _RunContext, batch_size: int) -> tuple[list[_Unit], dict[int, dict]]:
    """Units for the whole file list, fixed before any forward pass (so a resumed run computes the same
    batches), and the files whose header could not be read."""
    files = context.files
    if context.mode == "asr":  # ASR runs per window in the main process
        return [_Unit((i,), True) for i in range(len(files))], {}
    durations: dict[int, float] = {}
    errors: dict[int, dict] = {}
    for index, path in enumerate(files):
        try:
            durations[index] = audio_info(path).duration
        except (AudioError, ValueError) as exc:
            errors[index] = _error_entry(index, path, exc, context.on_error)
    if context.mode == "transcripts":  # no audio to decode: batches in file order
        order = sorted(durations)
        return [_Unit(tuple(order[k : k + batch_size]), False) for k in range(0, len(order), batch_size)], errors
    short = sorted((i for i, d in durations.items() if d <= context.window_seconds), key=lambda i: (-durations[i], i))
    units = [_Unit(tuple(short[k : k + batch_size]), False) for k in range(0, len(short), batch_size)]
    units += [_Unit((i,), True) for i in sorted(durations) if durations[i] > context.window_seconds]
    return units, errors


def _error_entry(index: int, path: str, exc: Exception, on_error: str) -> dict:
    if on_error == "raise":
        raise exc
    logger.error("skipping %s", exc)
    return {"index": index, "file": path, "error": str(exc)}


def _file_items(context: _RunContext, index: int, keep_wave: bool = True) -> Iterator[_Item]:
    """One file's windows (audio, with its transcript or per-window ASR text), or its transcript alone."""
    path = context.files[index]
    if context.mode == "transcripts":
        yield _Item(index, 0.0, audio_info(path).duration, None, transcript_for(path, context.transcripts), False)
        return
    text = transcript_for(path, context.transcripts) if context.transcripts is not None else None
    window, hop = round(context.window_seconds * context.rate), round(context.hop_seconds * context.rate)
    for item in stream_windows(stream_mono(path, context.rate), window, hop):
        if context.asr is not None:
            text = context.asr({"raw": item.wave, "sampling_rate": context.rate})["text"].strip()
        yield _Item(index, item.start / context.rate, item.end / context.rate, item.wave if keep_wave else None, text, context.asr is not None)


class _UnitDataset(torch.utils.data.Dataset):
    """A batched unit, decoded and prepared (feature extraction, tokenisation) in a DataLoader worker."""

    def __init__(self, context: _RunContext, units: list[_Unit]):
        self.context, self.units = context, units

    def __len__(self) -> int:
        return len(self.units)

    def __getitem__(self, position: int):
        unit_id, unit = self.units[position]
        items, errors = [], []
        for index in unit.files:
            try:
                items.extend(_file_items(self.context, index))
            except (AudioError, ValueError) as exc:
                errors.append({"index": index, "file": self.context.files[index], "error": str(exc),
                               "reason": getattr(exc, "reason", None), "audio_error": isinstance(exc, AudioError)})
        inputs = self.context.predictor.prepare(items) if items else None
        return unit_id, [item._replace(wave=None) for item in items], errors, inputs


def _identity(x):
    return x


def _run_units(context: _RunContext, units: list[_Unit], done: dict[int, dict], journal, num_workers: int | None, progress: bool) -> dict[int, dict]:
    """Every unit's entry: those in ``done`` as they are, the others computed (and journaled)."""
    from tqdm.auto import tqdm

    entries = dict(done)
    pending = [(k, unit) for k, unit in enumerate(units) if k not in done]
    batched = [(k, unit) for k, unit in pending if not unit.streamed]
    streamed = [(k, unit) for k, unit in pending if unit.streamed]
    workers = (_default_workers() if num_workers is None else num_workers) if batched else 0
    threads = torch.get_num_threads()
    if workers:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenizers in forked workers: no thread pool warning
        # Leave a core to each decoding worker: OpenMP threads that outnumber the free cores spin at
        # every barrier and can make the forward pass several times slower (measured in
        # benchmarks/predict_throughput.py).
        torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 1) - workers)))
    try:
        return _run_pending(context, units, entries, batched, streamed, journal, workers, progress, tqdm)
    finally:
        torch.set_num_threads(threads)


def _run_pending(context, units, entries, batched, streamed, journal, workers, progress, tqdm) -> dict[int, dict]:
    total_files = sum(len(u.files) for _, u in batched + streamed)
    with tqdm(total=total_files, desc="predict", unit="file", disable=not progress or total_files < 2) as bar:
        if batched:
            from ser_hf.prediction_output import release_inherited_locks

            loader = torch.utils.data.DataLoader(
                _UnitDataset(context, batched), batch_size=None, shuffle=False, num_workers=workers, collate_fn=_identity,
                prefetch_factor=4 if workers else None,
                multiprocessing_context=_fork_context() if workers else None,
                worker_init_fn=release_inherited_locks if workers else None,
            )
            for unit_id, items, errors, inputs in loader:
                for error in errors:
                    _raise_or_log(error, context.on_error)
                outputs = context.predictor.run(inputs) if items else (None, None)
                entries[unit_id] = _finish_unit(context, units[unit_id], items, outputs, errors, journal, unit_id)
                bar.update(len(units[unit_id].files))
        for unit_id, unit in streamed:
            (index,) = unit.files
            items, outputs, errors = [], [], []
            try:
                for batch in _batches(_file_items(context, index), context.batch_size):
                    probabilities, attributes = context.predictor(batch)
                    items.extend(item._replace(wave=None) for item in batch)
                    outputs.append((probabilities, attributes))
            except (AudioError, ValueError) as exc:
                errors.append(_error_entry(index, context.files[index], exc, context.on_error))
            joined = tuple(None if not outputs or outputs[0][j] is None else np.concatenate([o[j] for o in outputs]) for j in (0, 1))
            entries[unit_id] = _finish_unit(context, unit, items, joined, errors, journal, unit_id)
            bar.update(1)
    return entries


def _raise_or_log(error: dict, on_error: str) -> None:
    if on_error == "raise":
        raise AudioError(error["file"], error["reason"]) if error.get("audio_error") else ValueError(error["error"])
    logger.error("skipping %s", error["error"])


def _default_workers() -> int:
    """One decoding worker per spare core (at most 4): decoding overlaps the forward pass."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def _fork_context():
    import multiprocessing

    return multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None


def _finish_unit(context: _RunContext, unit: _Unit, items: list[_Item], outputs, errors: list[dict], journal, unit_id: int) -> dict:
    """Per-file window rows and summaries of one unit; journaled as one line."""
    probabilities, attributes = outputs
    failed = {e["index"] for e in errors}
    rows: dict[int, list[dict]] = {}
    file_text: dict[int, str] = {}
    for k, item in enumerate(items):
        if item.file_index in failed:  # a file that broke half-way: its windows are not reported
            continue
        row: dict[str, Any] = {"file": context.files[item.file_index], "start": round(item.start, 4), "end": round(item.end, 4)}
        if item.text is not None:
            if item.text_per_window:
                row["text"] = item.text
            else:
                file_text[item.file_index] = item.text
        if probabilities is not None:
            row["probabilities"] = dict(zip(context.labels, map(float, probabilities[k])))
            row["label"] = context.labels[int(np.argmax(probabilities[k]))]
        if attributes is not None:
            row["attributes"] = dict(zip(context.attributes, map(float, attributes[k])))
        rows.setdefault(item.file_index, []).append(row)
    done = []
    for index in sorted(rows):
        for number, row in enumerate(rows[index]):
            row["window"] = number
        summary = _aggregate(context.files[index], rows[index], context.labels, context.attributes)
        if index in file_text:
            summary["text"] = file_text[index]
        done.append({"index": index, "windows": rows[index], "summary": summary})
    entry = {"files": done, "errors": [{k: e[k] for k in ("index", "file", "error")} for e in errors]}
    if journal is not None:
        journal.record(unit_id, entry)
    return entry


def _assemble(results: PredictionResults, context: _RunContext, entries: dict[int, dict], plan_errors: dict[int, dict]) -> None:
    """Results in input-file order, whatever order (and in how many runs) the units were computed."""
    by_file: dict[int, dict] = {}
    errors = dict(plan_errors)
    for entry in entries.values():
        for done in entry["files"]:
            by_file[done["index"]] = done
        for error in entry["errors"]:
            errors[error["index"]] = error
    for index in range(len(context.files)):
        if index in errors:
            results.errors.append({"file": errors[index]["file"], "error": errors[index]["error"]})
        elif index in by_file:
            results.windows.extend(by_file[index]["windows"])
            results.files.append(by_file[index]["summary"])


def _with_speaker_statistics(model_or_path, processor, files, device, backend, window_seconds, on_error):
    """A copy of a speaker-normalised speech model whose population statistics are those of ``files``
    (one speaker's recordings, cut into windows of the model's crop), and its processor."""
    import copy

    from ser_hf.data.speaker_statistics import SpeakerStatistics, frame_count
    from ser_hf.modeling import SERModelForSpeech

    model, processor = load_model(model_or_path, processor, device, backend)
    if not isinstance(model, SERModelForSpeech):
        raise ConfigError(
            f"same_speaker needs a PyTorch speech model trained with input_normalization: speaker; got {type(model).__name__}"
            + (" (an ONNX export: use backend='torch' on the checkpoint)" if type(model).__name__ == "ORTSERModel" else "")
        )
    normalization = getattr(model.config, "input_normalization", "none")
    if normalization != "speaker":
        raise ConfigError(
            f"same_speaker applies to models trained with input_normalization: speaker; this one has {normalization!r}"
        )
    rate = model.config.sampling_rate
    window = round((window_seconds or model.config.max_audio_seconds) * rate)
    hop = getattr(processor, "hop_length", 160)
    frames = []
    for path in files:
        try:
            wave = load_audio(path, rate)
        except (AudioError, OSError, ValueError):
            if on_error == "raise":
                raise
            continue  # reported by the prediction pass
        for start in range(0, max(len(wave), 1), window):
            piece = wave[start : start + window]
            if len(piece) == 0:
                continue
            features = processor([piece], sampling_rate=rate, padding="max_length", return_tensors="np")["input_features"][0]
            frames.append(features[:, : frame_count(len(piece), hop, features.shape[-1])])
    if not frames:
        raise ConfigError("same_speaker: none of the files could be read to compute the speaker's statistics")
    statistics = SpeakerStatistics.from_frames({"speaker": frames})
    model = copy.deepcopy(model) if not isinstance(model_or_path, (str, os.PathLike)) else model
    with torch.no_grad():
        model.input_mean.copy_(torch.from_numpy(statistics.mean["speaker"]))
        model.input_std.copy_(torch.from_numpy(statistics.std["speaker"]))
    logger.info("same_speaker: log-mel statistics of %d files (%d windows)", len(files), len(frames))
    return model, processor


def _model_name(model_or_path, ensemble_method: str) -> str:
    """What predictions.json names as the model: the folder, the ensemble's folders and method, or the type."""
    if isinstance(model_or_path, list):
        return f"{ensemble_method} of " + ", ".join(os.fspath(m) for m in model_or_path)
    if isinstance(model_or_path, (str, os.PathLike)):
        return os.fspath(model_or_path)
    return type(model_or_path).__name__


def _fingerprint(model) -> Any:
    """What identifies a model across runs: its folder and the sizes/times of its files (a retrained
    model in the same folder invalidates a journal); for objects, their type."""
    if model is None:
        return None
    if isinstance(model, tuple):
        model = model[0]
    if isinstance(model, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(model))
        if os.path.isdir(path):
            stats = []
            for name in sorted(os.listdir(path)):
                info = os.stat(os.path.join(path, name))
                stats.append([name, info.st_size, info.st_mtime_ns])
            return [path, stats]
        return path
    return type(model).__name__


def _batches(items: Iterator[_Item], size: int) -> Iterator[list[_Item]]:
    batch: list[_Item] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _aggregate(file: str, rows: list[dict], labels: list[str], attributes: list[str]) -> dict:
    weights = np.array([row["end"] - row["start"] for row in rows], dtype=np.float64)
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(rows), 1 / len(rows))
    out: dict[str, Any] = {"file": file, "duration": rows[-1]["end"], "num_windows": len(rows)}
    if labels:
        mean = weights @ np.array([[row["probabilities"][n] for n in labels] for row in rows])
        out["probabilities"] = dict(zip(labels, map(float, mean)))
        out["label"] = labels[int(np.argmax(mean))]
    if attributes:
        mean = weights @ np.array([[row["attributes"][n] for n in attributes] for row in rows])
        out["attributes"] = dict(zip(attributes, map(float, mean)))
    if "text" in rows[0]:
        out["text"] = " ".join(row["text"] for row in rows)
    return out


def _asr_callable(asr_model, device):
    if callable(asr_model):
        return asr_model
    from transformers import pipeline

    return pipeline("automatic-speech-recognition", model=asr_model, device=device)


def _asr_sampling_rate(asr) -> int:
    extractor = getattr(asr, "feature_extractor", None)
    return int(getattr(extractor, "sampling_rate", 16000))


__all__ = [
    "AUDIO_EXTENSIONS",
    "PredictionResults",
    "build_predictor",
    "find_audio_files",
    "load_model",
    "load_transcripts",
    "plot_timeline",
    "predict",
    "stream_mono",
    "stream_windows",
    "transcript_for",
    "window_bounds",
]
