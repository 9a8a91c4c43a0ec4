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


def window_bounds(num_samples: int, window: int, hop: int) -> list[tuple[int, int]]:
    """Window (start, end) samples for a recording of ``num_samples``: every ``hop`` while a full window
    fits, then one last full window aligned to the end so the tail is covered; one short window for a
    recording shorter than ``window``. `stream_windows` yields exactly these."""
    if num_samples <= window:
        return [(0, num_samples)]
    bounds = [(start, start + window) for start in range(0, num_samples - window + 1, hop)]
    if bounds[-1][1] < num_samples:
        bounds.append((num_samples - window, num_samples))
    return bounds


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
            raise ValueError(f"backend='onnx' needs a folder written by `ser-hf export --format onnx`, got {model_or_path!r}")
        from ser_hf.export.onnx_runtime import ORTSERModel

        model = ORTSERModel(path)
        if processor is None:
            processor = _processor_for(model, path)
        return model.to(device or "cpu"), processor
    if path is not None:
        from ser_hf.finetuning import ADAPTER_CONFIG_NAME, load_ser_model

        if not any(os.path.isfile(os.path.join(path, name)) for name in ("config.json", ADAPTER_CONFIG_NAME)):
            raise ValueError(f"{path}: no config.json or {ADAPTER_CONFIG_NAME}; give a saved ser-hf checkpoint folder")
        if onnx_folder:
            raise ValueError(f"{path} is an ONNX export (no PyTorch weights); use backend='onnx'")
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
    forward: Any  # batch -> SEROutput

    def __call__(self, batch: list["_Item"]) -> tuple[np.ndarray | None, np.ndarray | None]:
        with torch.inference_mode():
            output = self.forward(batch)
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
    if kind == "speech":
        rate = model.config.sampling_rate
        return _Predictor(
            model.config, True, False, rate, model.config, processor,
            lambda batch: model(**_speech_inputs(processor, [i.wave for i in batch], rate, device)),
        )
    if kind == "joint":
        extractor, tokenizer = processor
        rate = model.speech.config.sampling_rate

        def joint(batch):
            text = _text_inputs(tokenizer, [i.text for i in batch], model.text.config.max_length, device)
            text["text_attention_mask"] = text.pop("attention_mask")
            return model(**_speech_inputs(extractor, [i.wave for i in batch], rate, device), **text)

        return _Predictor(model.config, True, True, rate, model.speech.config, extractor, joint)
    return _Predictor(
        model.config, False, True, None, None, None,
        lambda batch: model(**_text_inputs(processor, [i.text for i in batch], model.config.max_length, device)),
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
            raise ValueError(f"{flag} must be a {kinds[name]} model, got a {model_kind(part)} model")
        width = part.pooled_size if hasattr(part, "pooled_size") else part.pooling.output_size
        if width != blocks[name]:
            raise ValueError(f"{flag} gives {width}-dim pooled vectors; the fusion head expects {blocks[name]} for {name!r}")
        parts[name] = (part, part_processor)
    speech = parts.get("audio")
    rate = speech[0].config.sampling_rate if speech else None

    def fused(batch):
        features = {}
        if speech:
            features["audio"] = speech[0].pool(**_speech_inputs(speech[1], [i.wave for i in batch], rate, device))
        if "text" in parts:
            text, tokenizer = parts["text"]
            features["text"] = text.pool(**_text_inputs(tokenizer, [i.text for i in batch], text.config.max_length, device))
        return model(features=features)

    return _Predictor(
        model.config, speech is not None, "text" in parts, rate, speech[0].config if speech else None,
        speech[1] if speech else None, fused,
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
        ``timeline_min_windows`` windows, ``timelines/<name>.png``; all written atomically."""
        from ser_hf.io import write_csv_atomic, write_json_atomic

        output_dir = os.fspath(output_dir)
        os.makedirs(output_dir, exist_ok=True)
        if timeline:
            self._write_timelines(output_dir, timeline_min_windows)
        window_text = ["text"] if any("text" in row for row in self.windows) else []
        file_text = ["text"] if any("text" in row for row in self.files) else []
        label = ["label"] if self.labels else []
        window_keys = ["file", "window", "start", "end", *label, *window_text]
        file_keys = ["file", "duration", "num_windows", *label, *(["timeline"] if timeline else []), *file_text]
        paths = {
            "windows_csv": os.path.join(output_dir, "windows.csv"),
            "files_csv": os.path.join(output_dir, "files.csv"),
            "json": os.path.join(output_dir, "predictions.json"),
        }
        write_csv_atomic(paths["windows_csv"], self._header(window_keys), (self._flat(r, window_keys) for r in self.windows))
        write_csv_atomic(paths["files_csv"], self._header(file_keys), (self._flat(r, file_keys) for r in self.files))
        write_json_atomic(paths["json"], self.to_dict())
        return paths

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
) -> PredictionResults:
    """Predict emotions for audio files and directories (recursively: wav, flac, ogg, mp3).

    Args:
        model_or_path: a saved ser-hf checkpoint folder or a loaded model: speech, text, joint
            (speech + text end to end) or fusion head.
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
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    files = find_audio_files(paths)
    predictor = build_predictor(model_or_path, processor, device, speech_model, text_model, backend)
    config = predictor.config
    results = PredictionResults(
        labels=[config.id2label[i] for i in range(config.num_classes)] if config.has_categorical else [],
        label_codes=list(config.labels) if config.has_categorical else [],
        attributes=list(config.attributes) if config.has_attributes else [],
        attribute_range=tuple(config.attribute_range) if config.has_attributes else None,
        model=os.fspath(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else type(model_or_path).__name__,
    )
    asr = table = None
    if predictor.needs_text:
        if (transcripts is None) == (asr_model is None):
            raise ValueError("this model reads text: give exactly one of transcripts (file or mapping) or asr_model")
        table = None if transcripts is None else (transcripts if isinstance(transcripts, dict) else load_transcripts(transcripts))
        asr = None if asr_model is None else _asr_callable(asr_model, device)
    elif transcripts is not None or asr_model is not None:
        raise ValueError("transcripts/asr_model are for models that read text; this is a speech model")

    if predictor.needs_audio:
        rate = predictor.sampling_rate
        window_seconds = window_seconds or predictor.speech_config.max_audio_seconds
        hop_seconds = hop_seconds or window_seconds / 2
        if predictor.speech_config.is_whisper:
            limit = predictor.extractor.n_samples / rate
            if window_seconds > limit:
                raise ValueError(f"window_seconds={window_seconds} exceeds this Whisper model's input window of {limit:g} s")
        items = _audio_items(files, rate, window_seconds, hop_seconds, results, on_error, asr=asr, transcripts=table, keep_wave=True)
    elif table is not None:
        if window_seconds is not None or hop_seconds is not None:
            raise ValueError("window_seconds/hop_seconds need asr_model: a transcripts file gives one text per file")
        items = _transcript_items(files, table, results, on_error)
    else:
        rate = _asr_sampling_rate(asr)
        window_seconds = window_seconds or DEFAULT_ASR_WINDOW_SECONDS
        hop_seconds = hop_seconds or window_seconds
        items = _audio_items(files, rate, window_seconds, hop_seconds, results, on_error, asr=asr, keep_wave=False)
    results.window_seconds, results.hop_seconds = window_seconds, hop_seconds
    _predict_items(items, predictor, files, results, batch_size)
    if output_dir is not None:
        results.write(output_dir, timeline=timeline)
    return results


def _audio_items(files, rate, window_seconds, hop_seconds, results, on_error, *, asr=None, transcripts=None, keep_wave=True):
    window, hop = round(window_seconds * rate), round(hop_seconds * rate)
    if window <= 0 or not 0 < hop <= window:
        raise ValueError(f"need window_seconds > 0 and 0 < hop_seconds <= window_seconds, got {window_seconds}, {hop_seconds}")
    for index, path in enumerate(files):
        try:
            text = transcript_for(path, transcripts) if transcripts is not None else None
            for item in stream_windows(stream_mono(path, rate), window, hop):
                if asr is not None:
                    text = asr({"raw": item.wave, "sampling_rate": rate})["text"].strip()
                wave = item.wave if keep_wave else None
                yield _Item(index, item.start / rate, item.end / rate, wave, text, asr is not None)
        except (AudioError, ValueError) as exc:
            _record_error(results, path, exc, on_error)


def _transcript_items(files, table, results, on_error) -> Iterator[_Item]:
    for index, path in enumerate(files):
        try:
            text = transcript_for(path, table)
            duration = audio_info(path).duration
        except (ValueError, AudioError) as exc:
            _record_error(results, path, exc, on_error)
            continue
        yield _Item(index, 0.0, duration, None, text, False)


def _record_error(results: PredictionResults, path: str, exc: Exception, on_error: str) -> None:
    if on_error == "raise":
        raise exc
    logger.error("skipping %s", exc)
    results.errors.append({"file": path, "error": str(exc)})


def _batches(items: Iterator[_Item], size: int) -> Iterator[list[_Item]]:
    batch: list[_Item] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _predict_items(items, run, files, results: PredictionResults, batch_size: int) -> None:
    """Run the model batch by batch, then average each file's windows."""
    per_file: dict[int, list[dict]] = {}
    file_text: dict[int, str] = {}
    for batch in _batches(items, batch_size):
        probabilities, attributes = run(batch)
        for k, item in enumerate(batch):
            row: dict[str, Any] = {"file": files[item.file_index], "start": round(item.start, 4), "end": round(item.end, 4)}
            if item.text is not None:
                if item.text_per_window:
                    row["text"] = item.text
                else:
                    file_text[item.file_index] = item.text
            if probabilities is not None:
                row["probabilities"] = dict(zip(results.labels, map(float, probabilities[k])))
                row["label"] = results.labels[int(np.argmax(probabilities[k]))]
            if attributes is not None:
                row["attributes"] = dict(zip(results.attributes, map(float, attributes[k])))
            per_file.setdefault(item.file_index, []).append(row)
    failed = {error["file"] for error in results.errors}
    for index in sorted(per_file):
        rows = per_file[index]
        if files[index] in failed:  # a file that broke half-way: its windows are not reported
            continue
        for number, row in enumerate(rows):
            row["window"] = number
        results.windows.extend(rows)
        summary = _aggregate(files[index], rows, results)
        if index in file_text:
            summary["text"] = file_text[index]
        results.files.append(summary)


def _aggregate(file: str, rows: list[dict], results: PredictionResults) -> dict:
    weights = np.array([row["end"] - row["start"] for row in rows], dtype=np.float64)
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(rows), 1 / len(rows))
    out: dict[str, Any] = {"file": file, "duration": rows[-1]["end"], "num_windows": len(rows)}
    if results.labels:
        mean = weights @ np.array([[row["probabilities"][n] for n in results.labels] for row in rows])
        out["probabilities"] = dict(zip(results.labels, map(float, mean)))
        out["label"] = results.labels[int(np.argmax(mean))]
    if results.attributes:
        mean = weights @ np.array([[row["attributes"][n] for n in results.attributes] for row in rows])
        out["attributes"] = dict(zip(results.attributes, map(float, mean)))
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
