"""Cached utterance features: run a fine-tuned SER model once, keep its pooled vectors on disk.

Why: the paper's fusion trains only a small head on the concatenation of a fine-tuned speech
model's and a fine-tuned text model's pooled vectors (the vector each model's own head reads).
Computing those vectors once turns fusion training into seconds of work on a table of numbers.

`extract_features` writes a `datasets.Dataset` (``save_to_disk``) with the columns of
`FEATURE_COLUMNS`: ``features`` is the model's ``pooled_output`` (float32), the other columns are
copied from the manifest. It is

* **exact**: eval mode, no gradient; the vectors equal ``model.pool(**batch)`` of that utterance;
* **uncropped**: audio is used whole unless ``crop_seconds`` is given. Whisper is the exception:
  its encoder has a fixed input window (``max_audio_seconds`` of the SER config, at most 30 s), so
  the feature extractor truncates longer audio to that window whatever ``crop_seconds`` says;
* **resumable**: rows are processed in shards of ``shard_size`` rows, each saved to
  ``<output_dir>.parts/`` when finished; a rerun skips finished shards (if the model and the data
  are unchanged), then the shards are concatenated and the result is renamed into place;
* **distributed**: under ``accelerate launch`` each process computes a disjoint set of shards and
  the main process merges them (every row exactly once, in the input order).

Padding does not change a vector for WavLM, wav2vec2, HuBERT (masked convolutions, attention and
pooling) or text encoders (masked attention and pooling). data2vec-audio's convolutional
positional encoder sees the padded frames, and Whisper attends over its whole zero-padded window,
so for those two a vector can differ slightly with the batch; use ``batch_size=1`` where that matters.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from ser_hf.data.collators import SERTargets
from ser_hf.data.schema import FEATURES as MANIFEST_FEATURES
from ser_hf.data.schema import column_values
from ser_hf.errors import DataError

logger = logging.getLogger(__name__)

COPIED_COLUMNS = ("label", "arousal", "valence", "dominance", "speaker", "gender", "split")
FEATURE_COLUMNS = ("id", "features", *COPIED_COLUMNS)
METADATA_FILE = "ser_hf_features.json"
# What decides the vectors: a cached result with the same values is reused (paths and shard size do not matter).
_RESULT_KEYS = ("model_fingerprint", "dataset_fingerprint", "input_column", "crop_seconds", "num_rows")
_PARTS_META = "extraction.json"


def feature_schema() -> datasets.Features:
    """Columns of a cached feature dataset: the manifest's metadata plus a float32 vector."""
    schema = {"id": datasets.Value("string"), "features": datasets.List(datasets.Value("float32"))}
    schema.update({name: MANIFEST_FEATURES[name] for name in COPIED_COLUMNS})
    return datasets.Features(schema)


# ---------------------------------------------------------------------------------------- collator
@dataclass
class FeatureCollator:
    """Rows of a feature dataset -> ``{"features": B x D float32, labels/attribute_labels}``.

    ``targets`` says which labels the model needs (``SERTargets.for_config(model.config)``).
    """

    targets: SERTargets = field(default_factory=SERTargets)
    feature_column: str = "features"

    def train_mode(self, seed: int | None = None) -> FeatureCollator:
        """Features need no random crop; training and evaluation batches are built alike."""
        return self

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        vectors = [row[self.feature_column] for row in rows]
        width = len(vectors[0])
        for row, vector in zip(rows, vectors):
            if len(vector) != width:
                raise ValueError(
                    f"row {row.get('id')!r}: {self.feature_column} has {len(vector)} values, "
                    f"row {rows[0].get('id')!r} has {width}"
                )
        if isinstance(vectors[0], np.ndarray):  # numpy-formatted rows (`join_feature_datasets`): one stack, no lists
            matrix = np.stack(vectors).astype(np.float32, copy=False)
        else:
            matrix = np.asarray(vectors, dtype=np.float32)
        batch = {"features": torch.from_numpy(matrix)}
        batch.update(self.targets(rows))
        return batch


# ---------------------------------------------------------------------------------------- extraction
def _model_fingerprint(model: torch.nn.Module) -> str:
    """Hash of config and weights: resuming with a retrained model must not reuse old shards."""
    digest = hashlib.sha256(model.config.to_json_string(use_diff=False).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _dataset_fingerprint(dataset: datasets.Dataset, input_column: str) -> str:
    digest = hashlib.sha256()
    for column in ("id", input_column):
        digest.update(json.dumps(list(dataset[column])).encode())
    return digest.hexdigest()


def _input_column(model, text_column: str) -> str:
    from ser_hf.configuration import SERSpeechConfig, SERTextConfig

    if isinstance(model.config, SERSpeechConfig):
        return "audio"
    if isinstance(model.config, SERTextConfig):
        return text_column
    raise TypeError(f"extract_features needs a ser-hf speech or text model, got {type(model).__name__}")


def _check_rows(dataset: datasets.Dataset, input_column: str) -> None:
    missing = [c for c in ("id", input_column) if c not in dataset.column_names]
    if missing:
        raise ValueError(f"dataset has no column(s) {missing} (columns: {dataset.column_names})")
    ids = column_values(dataset, "id")
    seen: set[str] = set()
    duplicates = sorted({i for i in ids if i in seen or seen.add(i)})
    if duplicates:
        raise ValueError(f"ids must be unique to cache features by id; duplicated: {duplicates[:10]}")
    empty = [row_id for row_id, value in zip(ids, dataset[input_column]) if value is None or value == ""]
    if empty:
        raise ValueError(f"{len(empty)} rows have no {input_column!r} (first: {empty[:10]})")


@contextmanager
def _quiet_datasets():
    """No per-shard 'Saving the dataset' bars inside the extraction's own progress bar."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _save_dataset_atomically(dataset: datasets.Dataset, path: str, metadata: dict | None = None) -> None:
    """save_to_disk into a sibling temp folder, then rename it over ``path``.

    Readers see the old dataset, then the new one, never a partial one (at worst, for an instant
    between the two renames, none). Temp folders a killed run left beside ``path`` are removed.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    # A run killed mid-save (kill -9) leaves its temp folders behind; nothing reads them, clear them now.
    for prefix in (".tmp-", ".old-"):
        for stale in glob.glob(os.path.join(glob.escape(parent), f".{glob.escape(os.path.basename(path))}{prefix}*")):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        with _quiet_datasets():
            dataset.save_to_disk(tmp)
        if metadata is not None:
            from ser_hf.io import write_json_atomic

            write_json_atomic(os.path.join(tmp, METADATA_FILE), metadata)
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
            os.replace(path, os.path.join(old, "data"))
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def read_feature_metadata(path: str) -> dict:
    """What `extract_features` recorded about a cached feature dataset (model, task, labels, sizes)."""
    meta_path = os.path.join(path, METADATA_FILE)
    if not os.path.isfile(meta_path):
        raise DataError(f"{path} is not a ser-hf feature dataset (no {METADATA_FILE}); run `ser-hf extract` to make one")
    with open(meta_path, encoding="utf-8") as handle:
        return json.load(handle)


def load_features(path: str) -> datasets.Dataset:
    """A cached feature dataset written by `extract_features`."""
    read_feature_metadata(path)
    return datasets.load_from_disk(path)


def feature_matrix(dataset: datasets.Dataset, column: str = "features") -> np.ndarray:
    """The feature column as an N x D float32 array (an error if rows differ in width).

    Read straight from Arrow: a fixed-width column of an unselected dataset is a zero-copy view of
    its (memory-mapped) buffer; otherwise one N x D copy is made, never a list of row arrays.
    """
    if len(dataset) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    chunks = dataset.with_format("arrow")[column]
    chunks = chunks.chunks if isinstance(chunks, pa.ChunkedArray) else [chunks]
    widths: set[int] = set()
    parts = []
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        if pa.types.is_fixed_size_list(chunk.type):
            widths.add(chunk.type.list_size)
        else:
            offsets = chunk.offsets.to_numpy()
            widths.update(np.unique(np.diff(offsets)).tolist())
        if chunk.null_count:
            raise DataError(f"{chunk.null_count} rows of {column!r} have no vector")
        parts.append(chunk.flatten())
    if len(widths) != 1:
        raise DataError(f"rows of {column!r} differ in width ({sorted(widths)}); mixed feature datasets?")
    width = widths.pop()
    values = [p.to_numpy(zero_copy_only=False) for p in parts]
    flat = values[0] if len(values) == 1 else np.concatenate(values)
    return flat.reshape(-1, width).astype(np.float32, copy=False)


def _shard_rows(shard: datasets.Dataset, pooled: np.ndarray) -> dict[str, list]:
    columns: dict[str, list] = {"id": list(shard["id"]), "features": list(pooled)}
    for name in COPIED_COLUMNS:
        columns[name] = list(shard[name]) if name in shard.column_names else [None] * len(shard)
    return columns


def _distributed_state():
    """accelerate's process state; CPU processes (``accelerate launch`` without GPUs) join one gloo group."""
    from accelerate import PartialState

    from ser_hf.training_args import _has_accelerator

    on_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _has_accelerator()
    return PartialState(cpu=True) if on_cpu else PartialState()


distributed_state = _distributed_state  # public: transcription shares its processes the same way


def shards_of_process(num_shards: int, process_index: int, num_processes: int) -> list[int]:
    """Round-robin share of the shards: disjoint across processes, together all of them."""
    return list(range(process_index, num_shards, num_processes))


@torch.inference_mode()
def _pool_shard(model, collator, shard: datasets.Dataset, batch_size: int, num_workers: int, device, bar) -> np.ndarray:
    loader = torch.utils.data.DataLoader(shard, batch_size=batch_size, collate_fn=collator, num_workers=num_workers)
    vectors = []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        vectors.append(model(**batch).pooled_output.float().cpu().numpy())
        bar.update(len(vectors[-1]))
    return np.concatenate(vectors, axis=0)


def extract_features(
    model,
    processor,
    dataset: datasets.Dataset,
    *,
    output_dir: str,
    batch_size: int = 16,
    crop_seconds: float | None = None,
    resume: bool = True,
    shard_size: int = 1024,
    text_column: str = "transcript",
    num_workers: int = 0,
    progress: bool = True,
) -> datasets.Dataset:
    """Pooled features of every row of a manifest ``dataset`` -> a Dataset saved at ``output_dir``.

    ``model`` is a fine-tuned `SERModelForSpeech` or `SERModelForText`, ``processor`` its feature
    extractor or tokenizer. Returns the saved dataset (columns `FEATURE_COLUMNS`, input row order).
    With ``resume`` an up-to-date result or finished shards are reused; without it everything is
    recomputed. See the module docstring for cropping, sharding and distributed runs.
    """
    from tqdm.auto import tqdm

    from ser_hf.experiment import attach_speaker_statistics, build_collator
    from ser_hf.io import write_json_atomic

    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be >= 1, got {batch_size} and {shard_size}")
    input_column = _input_column(model, text_column)
    if len(dataset) == 0:
        raise ValueError("extract_features got an empty dataset (check the split names)")
    _check_rows(dataset, input_column)
    state = _distributed_state()
    config = model.config
    meta = {
        "model_name_or_path": getattr(model, "name_or_path", None) or None,
        "model_type": config.model_type,
        "model_fingerprint": _model_fingerprint(model),
        "dataset_fingerprint": _dataset_fingerprint(dataset, input_column),
        "input_column": input_column,
        "crop_seconds": crop_seconds,
        "shard_size": shard_size,
        "num_rows": len(dataset),
        "task": config.task,
        "labels": config.labels,
        "label_names": config.label_names,
        "attributes": config.attributes,
        "attribute_range": config.attribute_range,
    }
    output_dir = os.path.abspath(output_dir)
    parts_dir = output_dir + ".parts"

    def up_to_date() -> bool:
        try:
            done = read_feature_metadata(output_dir)
        except (FileNotFoundError, ValueError):
            return False
        return all(done.get(k) == meta[k] for k in _RESULT_KEYS)

    if resume and up_to_date():
        logger.info("features in %s are up to date; nothing to do", output_dir)
        return datasets.load_from_disk(output_dir)

    if state.is_main_process:
        previous = None
        if os.path.isfile(os.path.join(parts_dir, _PARTS_META)):
            with open(os.path.join(parts_dir, _PARTS_META), encoding="utf-8") as handle:
                previous = json.load(handle)
        if os.path.isdir(parts_dir) and (not resume or previous != meta):
            if resume:
                logger.warning("%s was made with another model, data or settings; starting over", parts_dir)
            shutil.rmtree(parts_dir)
        os.makedirs(parts_dir, exist_ok=True)
        write_json_atomic(os.path.join(parts_dir, _PARTS_META), meta)
    state.wait_for_everyone()

    num_shards = math.ceil(len(dataset) / shard_size)

    def shard_path(i: int) -> str:
        return os.path.join(parts_dir, f"shard-{i:05d}")

    mine = shards_of_process(num_shards, state.process_index, state.num_processes)
    todo = [i for i in mine if not os.path.isdir(shard_path(i))]
    if len(todo) < len(mine):
        logger.info("resuming: %d of %d shards already extracted", len(mine) - len(todo), len(mine))

    collator = build_collator(model, processor, max_seconds=crop_seconds, text_column=text_column)
    collator.targets = SERTargets()  # features need no labels; unknown label codes are not an error here
    attach_speaker_statistics(collator, model, (dataset,), progress=progress and state.is_local_main_process)
    was_training = model.training
    model.eval()
    model.to(state.device)
    rows_todo = sum(min(shard_size, len(dataset) - i * shard_size) for i in todo)
    logger.info("process %d/%d: %d rows in %d shards to extract", state.process_index, state.num_processes, rows_todo, len(todo))
    schema = feature_schema()
    show = progress and state.is_local_main_process
    try:
        with tqdm(total=rows_todo, desc=f"extracting {input_column} features", unit="utt", disable=not show) as bar:
            for i in todo:
                shard = dataset.select(range(i * shard_size, min((i + 1) * shard_size, len(dataset))))
                pooled = _pool_shard(model, collator, shard, batch_size, num_workers, state.device, bar)
                part = datasets.Dataset.from_dict(_shard_rows(shard, pooled), features=schema)
                _save_dataset_atomically(part, shard_path(i))
    finally:
        model.train(was_training)
    state.wait_for_everyone()

    if state.is_main_process:
        parts = [datasets.load_from_disk(shard_path(i)) for i in range(num_shards)]
        merged = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
        with _quiet_datasets():
            merged = merged.flatten_indices()
        if column_values(merged, "id") != column_values(dataset, "id"):
            raise RuntimeError(f"merged shards in {parts_dir} do not match the dataset's rows; rerun with resume=False")
        meta["feature_size"] = len(merged[0]["features"]) if len(merged) else 0
        _save_dataset_atomically(merged, output_dir, meta)
        shutil.rmtree(parts_dir, ignore_errors=True)
        logger.info("wrote %d feature vectors of size %d to %s", len(merged), meta["feature_size"], output_dir)
    state.wait_for_everyone()
    return datasets.load_from_disk(output_dir)


# ---------------------------------------------------------------------------------------- joining
def join_feature_datasets(blocks: dict[str, datasets.Dataset]) -> datasets.Dataset:
    """One dataset whose ``features`` concatenate each block's vector, in the fusion block order.

    Rows are joined by ``id`` and follow the first block's order. Every id must be in every block
    and the copied label columns must agree; otherwise the error names the offending ids.
    """
    from ser_hf.modeling.fusion import ordered_blocks

    if not blocks:
        raise ValueError("join_feature_datasets needs at least one feature dataset")
    widths = {}
    for name, ds in blocks.items():
        if "id" not in ds.column_names or "features" not in ds.column_names:
            raise DataError(f"feature block {name!r} has no id/features columns (columns: {ds.column_names})")
        widths[name] = len(ds[0]["features"]) if len(ds) else 0
    order = list(ordered_blocks(widths))
    first = blocks[order[0]]
    ids = _arrow_column(first, "id")
    row_of: dict[str, np.ndarray] = {}
    for name in order:
        block_ids = _arrow_column(blocks[name], "id")
        if len(pc.unique(block_ids)) != len(block_ids):
            raise DataError(f"feature block {name!r} has duplicated ids")
        if name == order[0]:
            row_of[name] = np.arange(len(ids), dtype=np.int64)
            continue
        position = pc.index_in(ids, value_set=block_ids)  # null where the id is missing from this block
        only_first = pc.filter(ids, pc.is_null(position)).to_pylist()
        only_other = pc.filter(block_ids, pc.invert(pc.is_in(block_ids, value_set=ids))).to_pylist()
        if only_first or only_other:
            raise DataError(
                f"feature blocks {order[0]!r} and {name!r} cover different utterances: "
                f"{len(only_first)} ids only in {order[0]!r} (first: {only_first[:10]}), "
                f"{len(only_other)} ids only in {name!r} (first: {only_other[:10]})"
            )
        row_of[name] = position.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    columns = {name: _arrow_column(first, name) for name in COPIED_COLUMNS if name in first.column_names}
    matrix = np.empty((len(ids), sum(widths[n] for n in order)), dtype=np.float32)  # the one N x D copy
    start = 0
    for name in order:
        rows = row_of[name]
        if len(ids):
            block = feature_matrix(blocks[name])
            matrix[:, start : start + widths[name]] = block[rows] if name != order[0] else block
        start += widths[name]
        if name == order[0]:
            continue
        other = blocks[name]
        for column, values in columns.items():
            if column not in other.column_names:
                continue
            theirs = _arrow_column(other, column).take(pa.array(rows))
            bad = [ids[int(j)].as_py() for j in _disagreeing_rows(values, theirs)[:10]]
            if bad:
                raise DataError(f"feature blocks {order[0]!r} and {name!r} disagree on {column!r} for ids {bad[:10]}")
    schema = feature_schema()
    arrays = {
        "id": ids.cast(pa.string()),
        "features": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1]),
    }
    arrays.update(columns)
    features = {k: schema[k] for k in arrays}
    features["features"] = datasets.List(datasets.Value("float32"), length=matrix.shape[1])
    table = pa.table(arrays).cast(datasets.Features(features).arrow_schema)
    # An explicit fingerprint: datasets would otherwise hash (and so copy) the whole table.
    fingerprint = hashlib.sha256(
        json.dumps([[name, getattr(blocks[name], "_fingerprint", None) or name] for name in order]).encode()
    ).hexdigest()[:16]
    joined = datasets.Dataset(
        table, info=datasets.DatasetInfo(features=datasets.Features(features)), fingerprint=f"joined-{fingerprint}"
    )
    # Rows reach the collator as numpy vectors (one stack per batch), the rest as Python values.
    return joined.with_format("numpy", columns=["features"], output_all_columns=True)


def _arrow_column(dataset: datasets.Dataset, name: str) -> pa.Array:
    """One column as a single Arrow array (selections applied), without Python objects per row."""
    values = dataset.with_format("arrow")[name]
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _disagreeing_rows(mine: pa.ChunkedArray, theirs: pa.ChunkedArray) -> np.ndarray:
    """Positions where two columns differ; two nulls or two NaNs agree (computed in Arrow, no Python rows)."""
    same = pc.fill_null(pc.equal(mine, theirs), False)
    same = pc.or_(same, pc.and_(pc.is_null(mine), pc.is_null(theirs)))
    if pa.types.is_floating(mine.type) and pa.types.is_floating(theirs.type):
        both_nan = pc.and_(pc.fill_null(pc.is_nan(mine), False), pc.fill_null(pc.is_nan(theirs), False))
        same = pc.or_(same, both_nan)
    return np.flatnonzero(~same.to_numpy(zero_copy_only=False))


__all__ = [
    "FEATURE_COLUMNS",
    "FeatureCollator",
    "extract_features",
    "feature_matrix",
    "feature_schema",
    "join_feature_datasets",
    "load_features",
    "read_feature_metadata",
]
