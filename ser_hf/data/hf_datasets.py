"""Any Hugging Face ``datasets`` input -> the ser-hf manifest schema.

``load_dataset_as_manifest("user/corpus", columns=DatasetColumns(label="emotion"))`` reads a Hub
dataset, a local ``audiofolder``, parquet/CSV/JSON files or a ``save_to_disk`` folder and maps it
onto ``ser_hf.data.schema`` (id, audio, transcript, label, A/V/D, speaker, gender, split), so
validation, the collators, the trainer and evaluation treat it like any corpus.

Audio is never decoded here and never by ``datasets``: every ``Audio`` column is cast to
``Audio(decode=False)`` (so torchcodec/FFmpeg are not needed) and ``ser_hf.data.audio`` decodes
the ``{"path", "bytes"}`` values with soundfile and resamples with soxr. A column whose rows are
all plain paths becomes the schema's path string; a column with embedded bytes (parquet, Hub
datasets) or decoded ``{"array", "sampling_rate"}`` values is kept as it is.

``audiofolder`` needs torchcodec in ``datasets`` even with ``decode=False`` features (its builder
encodes every file through ``Audio.encode_example``). ser-hf runs datasets' own ``AudioFolder``
builder (same file discovery, split patterns, label-from-folder and ``metadata.csv`` logic) with
an ``Audio`` feature whose encoder just records the path.

``ClassLabel`` integers become their names, so the model's ``labels`` are the dataset's class names
in the dataset's order.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import datasets

from ser_hf.data.schema import ATTRIBUTES, COLUMNS, FEATURES

logger = logging.getLogger(__name__)

_FILE_BUILDERS = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".arrow": "arrow"}


@dataclass
class DatasetColumns:
    """Which column of the source dataset feeds which schema column (``None``: absent)."""

    audio: str = "audio"
    label: str | None = "label"
    text: str | None = None
    id: str | None = None
    speaker: str | None = None
    gender: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)  # schema attribute -> source column

    def __post_init__(self):
        unknown = sorted(set(self.attributes) - set(ATTRIBUTES))
        if unknown:
            raise ValueError(f"attribute_column_names keys must be among {list(ATTRIBUTES)}, got {unknown}")

    def source_columns(self) -> dict[str, str]:
        """schema name -> source column, for every mapped column."""
        pairs = {"audio": self.audio, "label": self.label, "transcript": self.text, "id": self.id,
                 "speaker": self.speaker, "gender": self.gender, **self.attributes}
        return {schema: source for schema, source in pairs.items() if source}


@dataclass
class _PathAudio(datasets.Audio):
    """``Audio`` whose encoder stores the path (or bytes) as given: what ``decode=False`` means, minus
    the torchcodec import ``datasets.Audio.encode_example`` makes unconditionally."""

    def encode_example(self, value):
        if isinstance(value, (str, os.PathLike)):
            return {"bytes": None, "path": os.fspath(value)}
        if isinstance(value, (bytes, bytearray)):
            return {"bytes": bytes(value), "path": None}
        if isinstance(value, dict) and (value.get("bytes") is not None or value.get("path")):
            return {"bytes": value.get("bytes"), "path": value.get("path")}
        raise ValueError(f"audiofolder: cannot store {type(value).__name__} without torchcodec")


def _path_audio_builder(builder):
    """The same ``AudioFolder`` builder (resolved data files, config) with the path-only Audio feature."""
    from datasets.packaged_modules.audiofolder.audiofolder import AudioFolder

    class PathAudioFolder(AudioFolder):
        BASE_FEATURE = _PathAudio

    config = builder.config
    kwargs = {key: getattr(config, key) for key in ("drop_labels", "drop_metadata", "metadata_filenames", "filters") if hasattr(config, key)}
    return PathAudioFolder(
        cache_dir=builder._cache_dir_root,
        hash=builder.hash,
        data_files=config.data_files,
        features=config.features,
        **kwargs,
    )


def load_hf_dataset(
    name: str,
    config_name: str | None = None,
    *,
    revision: str | None = None,
    data_dir: str | None = None,
    cache_dir: str | None = None,
) -> datasets.DatasetDict:
    """A ``DatasetDict`` from a Hub id, a local dataset folder (any packaged format, ``audiofolder``
    included), a single parquet/CSV/JSON file or a ``save_to_disk`` folder; Audio columns not decoded."""
    name = os.fspath(name)
    if os.path.isdir(name) and _is_saved_dataset(name):
        loaded = datasets.load_from_disk(name)
    elif os.path.isfile(name):
        ext = os.path.splitext(name)[1].lower()
        if ext not in _FILE_BUILDERS:
            raise ValueError(f"{name}: unsupported dataset file type {ext!r}; use one of {sorted(_FILE_BUILDERS)}")
        kwargs = {"delimiter": "\t"} if ext == ".tsv" else {}
        loaded = datasets.load_dataset(_FILE_BUILDERS[ext], data_files={"train": name}, cache_dir=cache_dir, **kwargs)
    else:
        builder = datasets.load_dataset_builder(
            name, config_name, revision=revision, data_dir=data_dir, cache_dir=cache_dir
        )
        from datasets.packaged_modules.audiofolder.audiofolder import AudioFolder

        if isinstance(builder, AudioFolder):
            builder = _path_audio_builder(builder)
        builder.download_and_prepare()
        loaded = builder.as_dataset()
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return datasets.DatasetDict({split: _undecoded(ds) for split, ds in loaded.items()})


def _is_saved_dataset(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, f)) for f in ("dataset_dict.json", "state.json"))


def _undecoded(ds: datasets.Dataset) -> datasets.Dataset:
    for column, feature in ds.features.items():
        if isinstance(feature, datasets.Audio) and feature.decode:
            ds = ds.cast_column(column, datasets.Audio(decode=False))
    return ds


def class_label_names(dataset_dict: datasets.DatasetDict, column: str | None) -> list[str] | None:
    """The ``ClassLabel`` names of ``column`` (from the first split that has it), else None."""
    for ds in dataset_dict.values():
        feature = ds.features.get(column) if column else None
        if isinstance(feature, datasets.ClassLabel):
            return list(feature.names)
    return None


def to_manifest(
    dataset_dict: datasets.DatasetDict, columns: DatasetColumns, *, audio_root: str | None = None
) -> datasets.DatasetDict:
    """Every split in the manifest schema. Relative audio paths are resolved against ``audio_root``.

    A mapped column that is missing from a split is an error naming the split and the columns it has.
    """
    return datasets.DatasetDict(
        {split: _split_to_manifest(ds, split, columns, audio_root) for split, ds in dataset_dict.items()}
    )


def _split_to_manifest(ds: datasets.Dataset, split: str, columns: DatasetColumns, audio_root) -> datasets.Dataset:
    mapping = columns.source_columns()
    missing = sorted({source for source in mapping.values() if source not in ds.column_names})
    if missing:
        raise ValueError(
            f"split {split!r}: column(s) {missing} not found; it has {ds.column_names} "
            f"(set --audio_column_name / --label_column_name / ... to the dataset's names)"
        )
    audio = _audio_column(ds, columns.audio, audio_root)
    label_feature = ds.features.get(columns.label) if columns.label else None
    names = label_feature.names if isinstance(label_feature, datasets.ClassLabel) else None
    meta_sources = [source for schema, source in mapping.items() if schema != "audio"]
    meta_features = datasets.Features({k: v for k, v in FEATURES.items() if k != "audio"})

    def convert(batch, indices):
        size = len(indices)
        out = {}
        for schema in COLUMNS:
            if schema == "audio":
                continue
            source = mapping.get(schema)
            values = batch[source] if source else [None] * size
            if schema == "label":
                values = [_label_name(v, names) for v in values]
            elif schema in ATTRIBUTES:
                values = [None if v is None else float(v) for v in values]
            elif schema == "split":
                values = [split] * size
            else:
                values = [None if v is None else (str(v).strip() or None) for v in values]
            out[schema] = values
        if not columns.id:
            out["id"] = [f"{split}/{i}" for i in indices]
        return out

    meta = ds.select_columns(meta_sources).map(
        convert, batched=True, with_indices=True, remove_columns=meta_sources, features=meta_features,
        desc=f"mapping {split} to the ser-hf schema",
    )
    merged = datasets.concatenate_datasets([audio, meta], axis=1)
    return merged.select_columns(list(COLUMNS))


def _label_name(value, names):
    if value is None:
        return None
    if names is not None and isinstance(value, int) and not isinstance(value, bool):
        return None if value < 0 else names[value]  # -1: ClassLabel's "no label"
    text = str(value).strip()
    return text or None


def _audio_column(ds: datasets.Dataset, column: str, audio_root) -> datasets.Dataset:
    """The audio column renamed to ``audio``: path strings when no row embeds bytes, else left as is."""
    part = ds.select_columns([column])
    if column != "audio":
        part = part.rename_column(column, "audio")
    feature = part.features["audio"]
    root = os.fspath(audio_root) if audio_root else None
    if isinstance(feature, datasets.Audio):
        values = part.data.column("audio").combine_chunks()
        if values.null_count:
            raise ValueError(f"audio column {column!r} has {values.null_count} empty values")
        if values.type.get_field_index("bytes") >= 0 and values.field("bytes").null_count < len(values):
            return part  # embedded bytes: decoded from memory by ser_hf.data.audio
        paths = values.field("path").to_pylist()
        return _path_column(paths, root)
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        return _path_column(part["audio"], root)
    if isinstance(feature, dict) and {"array", "sampling_rate"} <= set(feature):
        return part  # decoded arrays (e.g. a Dataset built in Python): resampled when a batch is made
    raise ValueError(
        f"audio column {column!r} has type {feature}; expected datasets.Audio, a path string or "
        "{'array', 'sampling_rate'} values"
    )


def _path_column(paths, root) -> datasets.Dataset:
    def resolve(path):
        if path and root and not os.path.isabs(path) and "://" not in path:
            return os.path.join(root, path)
        return path

    return datasets.Dataset.from_dict(
        {"audio": [resolve(p) for p in paths]}, features=datasets.Features({"audio": datasets.Value("string")})
    )


def load_dataset_as_manifest(
    name: str,
    config_name: str | None = None,
    *,
    columns: DatasetColumns | None = None,
    revision: str | None = None,
    data_dir: str | None = None,
    cache_dir: str | None = None,
) -> tuple[datasets.DatasetDict, list[str] | None]:
    """(manifest DatasetDict, the label column's ClassLabel names or None) for a ``datasets`` source."""
    columns = columns or DatasetColumns()
    raw = load_hf_dataset(name, config_name, revision=revision, data_dir=data_dir, cache_dir=cache_dir)
    root = None
    if os.path.isfile(name):
        root = os.path.dirname(os.path.abspath(name))
    elif os.path.isdir(name):
        root = os.path.abspath(data_dir or name)
    return to_manifest(raw, columns, audio_root=root), class_label_names(raw, columns.label)


def load_from_data_args(data_args) -> datasets.DatasetDict:
    """The ``--dataset_name`` input of a run's `DataArguments` as a manifest DatasetDict; the label
    column's ClassLabel names ride along as ``.class_labels`` (None for string labels)."""
    columns = DatasetColumns(
        audio=data_args.audio_column_name,
        label=data_args.label_column_name,
        text=data_args.text_column_name,
        id=data_args.id_column_name,
        speaker=data_args.speaker_column_name,
        gender=data_args.gender_column_name,
        attributes=dict(data_args.attribute_column_names or {}),
    )
    corpus, class_labels = load_dataset_as_manifest(
        data_args.dataset_name,
        data_args.dataset_config_name,
        columns=columns,
        revision=data_args.dataset_revision,
        data_dir=data_args.dataset_data_dir,
        cache_dir=data_args.dataset_cache_dir,
    )
    corpus.class_labels = class_labels
    return corpus


def infer_labels(manifest: datasets.DatasetDict, splits=None) -> list[str]:
    """Sorted distinct labels of the given splits (all by default), for string label columns."""
    found = set()
    for split, ds in manifest.items():
        if splits is None or split in splits:
            found.update(label for label in ds["label"] if label is not None)
    return sorted(found)


def is_hub_id(name: str | None) -> bool:
    """True for a ``user/dataset`` style name that is not a local path (for model-card metadata)."""
    if not name or os.path.exists(name):
        return False
    parts = name.split("/")
    return len(parts) <= 2 and all(parts) and not name.startswith((".", "~"))


__all__ = [
    "DatasetColumns",
    "class_label_names",
    "infer_labels",
    "is_hub_id",
    "load_dataset_as_manifest",
    "load_from_data_args",
    "load_hf_dataset",
    "to_manifest",
]
