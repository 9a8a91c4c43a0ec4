"""Transcripts for the text model: the corpus's references where wanted, ASR output elsewhere.

The paper trained RoBERTa on MSP-Podcast's reference transcripts but evaluated it on Whisper
output, because a deployed system only ever sees ASR text. ``transcript_source`` says, per split,
which one a split gets:

* ``reference``: the corpus's transcript; a row without one is an error (nothing is guessed);
* ``asr``: the speech recogniser's output for every row, references ignored;
* ``reference_or_asr``: the reference where there is one, ASR for the rest.

ASR runs through ``transformers.pipeline("automatic-speech-recognition")`` with any HF model
(Whisper by default). Audio is decoded here with `ser_hf.data.audio.load_audio` and handed to the
pipeline as arrays. Results go to one JSONL cache per model and generation settings, keyed by
utterance id and the audio file's size and modification time; each batch is appended in one
write, so a crashed run resumes where it stopped and a finished one is never recomputed.

Under ``accelerate launch`` the rows still to transcribe are dealt out over the processes (each on
its own device); each process appends its batches to its own part file (``<cache>.part-<rank>``),
and the main process merges the parts into the cache with one atomic rename. Parts left by a
killed run are merged at the start of the next one, so a distributed run resumes like one process.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np

from ser_hf.data.audio import load_audio
from ser_hf.data.schema import ATTRIBUTES, COLUMNS, rows_to_dataset
from ser_hf.io import atomic_path

logger = logging.getLogger(__name__)

DEFAULT_ASR_MODEL = "openai/whisper-large-v3"
SOURCES = ("reference", "asr", "reference_or_asr")
DEFAULT_KEY = "default"  # transcript_source entry for every split not named explicitly
# The paper's choice: references to train on, Whisper output for everything evaluated.
PAPER_TRANSCRIPT_SOURCE = {"train": "reference", DEFAULT_KEY: "asr"}
CACHE_FORMAT = 1
PART_SUFFIX = ".part-"

__all__ = [
    "DEFAULT_ASR_MODEL",
    "PAPER_TRANSCRIPT_SOURCE",
    "SOURCES",
    "ASRCache",
    "default_cache_dir",
    "parse_transcript_source",
    "prepare_transcripts",
    "rows_needing_asr",
    "save_manifest",
    "select_transcripts",
    "source_for_split",
    "transcribe",
]


# ------------------------------------------------------------------------------- transcript_source
def parse_transcript_source(value: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"train=reference,default=asr"`` or a mapping -> {split: source}; None gives the paper's choice."""
    if value is None:
        return dict(PAPER_TRANSCRIPT_SOURCE)
    if isinstance(value, str):
        mapping = {}
        for part in filter(None, (p.strip() for p in value.split(","))):
            split, sep, source = part.partition("=")
            if not sep or not split.strip() or not source.strip():
                raise ValueError(f"transcript_source entry {part!r} is not split=source (e.g. 'train=reference,default=asr')")
            if split.strip() in mapping:
                raise ValueError(f"transcript_source names split {split.strip()!r} twice")
            mapping[split.strip()] = source.strip()
    elif isinstance(value, Mapping):
        mapping = {str(k): str(v) for k, v in value.items()}
    else:
        raise TypeError(f"transcript_source must be a string or a mapping, got {type(value).__name__}")
    if not mapping:
        raise ValueError("transcript_source is empty")
    bad = {split: source for split, source in mapping.items() if source not in SOURCES}
    if bad:
        raise ValueError(f"transcript_source {bad}: each source must be one of {', '.join(SOURCES)}")
    return mapping


def source_for_split(transcript_source: Mapping[str, str], split: str) -> str:
    """The source of ``split``: its own entry, else ``default``; a split covered by neither is an error."""
    if split in transcript_source:
        return transcript_source[split]
    if DEFAULT_KEY in transcript_source:
        return transcript_source[DEFAULT_KEY]
    raise ValueError(
        f"transcript_source {dict(transcript_source)} says nothing about split {split!r}; "
        f"add '{split}=<source>' or a '{DEFAULT_KEY}=<source>' entry"
    )


def _as_dataset_dict(data: datasets.Dataset | datasets.DatasetDict) -> datasets.DatasetDict:
    if isinstance(data, datasets.DatasetDict):
        return data
    if isinstance(data, datasets.Dataset):
        return datasets.DatasetDict({"data": data})
    raise TypeError(f"expected a datasets Dataset or DatasetDict, got {type(data).__name__}")


def _has_reference(text: str | None) -> bool:
    return text is not None and bool(text.strip())


def rows_needing_asr(corpus: datasets.DatasetDict, transcript_source: Mapping[str, str]) -> datasets.DatasetDict:
    """The rows ASR must transcribe for this ``transcript_source`` (splits with none are left out)."""
    needed = {}
    for split, dataset in corpus.items():
        source = source_for_split(transcript_source, split)
        if source == "asr":
            needed[split] = dataset
        elif source == "reference_or_asr":
            missing = [i for i, text in enumerate(dataset["transcript"]) if not _has_reference(text)]
            if missing:
                needed[split] = dataset.select(missing)
    return datasets.DatasetDict(needed)


def select_transcripts(
    corpus: datasets.DatasetDict,
    transcript_source: Mapping[str, str],
    asr: Mapping[str, str] | None = None,
) -> tuple[datasets.DatasetDict, dict[str, dict[str, int]]]:
    """Set every row's ``transcript`` from its split's source; returns the corpus and counts per split.

    ``asr`` maps utterance id -> ASR text (from `transcribe`). A ``reference`` split with rows that
    have no transcript, or a row that needs ASR text ``asr`` lacks, is an error listing every such row.
    """
    asr = asr or {}
    out, counts, problems = {}, {}, []
    for split, dataset in corpus.items():
        source = source_for_split(transcript_source, split)
        rows = dataset.to_list()
        used = {"reference": 0, "asr": 0}
        for row in rows:
            if source != "asr" and _has_reference(row["transcript"]):
                used["reference"] += 1
                continue
            if source == "reference":
                problems.append(f"{split}: {row['id']} ({row['audio']}) has no reference transcript")
            elif row["id"] not in asr:
                problems.append(f"{split}: {row['id']} ({row['audio']}) has no ASR transcript; run transcribe on it")
            else:
                row["transcript"] = asr[row["id"]]
                used["asr"] += 1
        out[split] = rows_to_dataset(rows)
        counts[split] = used
    if problems:
        from ser_hf.data.validation import DataValidationError, format_problems

        header = f"{len(problems)} rows have no usable transcript (transcript_source {dict(transcript_source)}):"
        hint = "use 'reference_or_asr' (or 'asr') for a split whose references are incomplete"
        raise DataValidationError(format_problems(header, problems) + f"\n{hint}", problems)
    return datasets.DatasetDict(out), counts


# ------------------------------------------------------------------------------------------- cache
def default_cache_dir() -> str:
    """``$SER_HF_CACHE/asr``, else ``~/.cache/ser_hf/asr``."""
    base = os.environ.get("SER_HF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ser_hf")
    return os.path.join(base, "asr")


def _file_key(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


class ASRCache:
    """Append-only JSONL of ASR results for one model + generation settings.

    The first line describes the model; every other line is one utterance (id, audio path, size,
    mtime_ns, text). Later lines win, so a re-transcribed file simply appends. A torn last line (a
    crash mid-write) is cut off on open with a warning; damage anywhere else is an error.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        model_name: str,
        generate_kwargs: Mapping[str, Any] | None = None,
        part: int | None = None,
    ):
        self.meta = {
            "format": CACHE_FORMAT,
            "model": model_name,
            "generate_kwargs": dict(generate_kwargs or {}),
        }
        digest = hashlib.sha1(json.dumps(self.meta, sort_keys=True, default=str).encode()).hexdigest()[:12]
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_name).strip("_")[-60:] or "model"
        self.cache_dir, self.model_name, self.generate_kwargs = os.fspath(cache_dir), model_name, generate_kwargs
        self.path = os.path.join(self.cache_dir, f"{slug}-{digest}.jsonl")
        if part is not None:  # one process's share of a distributed run, merged by `merge_parts`
            self.path = f"{self.path}{PART_SUFFIX}{int(part)}"
        self.entries: dict[str, dict] = {}
        self._load()

    def part_paths(self) -> list[str]:
        """The part files of this cache that distributed processes left (finished or killed)."""
        folder, prefix = os.path.dirname(self.path), os.path.basename(self.path) + PART_SUFFIX
        if not os.path.isdir(folder):
            return []
        return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                      if name.startswith(prefix) and name[len(prefix):].isdigit())

    def merge_parts(self) -> int:
        """Fold every part file into this cache with one atomic rename, then delete the parts.

        Returns the number of records merged. A torn last line of a part (a killed process) is dropped
        like the cache's own; only the main process may call this while no other process writes.
        """
        parts = self.part_paths()
        if not parts:
            return 0
        records = []
        for path in parts:
            part = ASRCache(self.cache_dir, self.model_name, self.generate_kwargs, part=int(path.rsplit(PART_SUFFIX, 1)[1]))
            records += list(part.entries.values())
        if records:
            merged = dict(self.entries)
            merged.update((record["id"], record) for record in records)
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            lines = [json.dumps({"meta": self.meta}, sort_keys=True)]
            lines += [json.dumps(record, ensure_ascii=False) for record in merged.values()]
            with atomic_path(self.path) as tmp:
                with open(tmp, "w", encoding="utf-8") as handle:
                    handle.write("\n".join(lines) + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
            self.entries = merged
        for path in parts:
            os.remove(path)
        return len(records)

    def _load(self) -> None:
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb") as handle:
            data = handle.read()
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]  # tail: bytes after the last newline (normally empty)
        good_bytes = len(data) - len(tail)
        if tail:
            logger.warning("%s: dropping a torn last line (%d bytes) left by an interrupted run", self.path, len(tail))
        for number, raw in enumerate(complete, start=1):
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                if number == len(complete) and not tail:  # torn but newline-terminated: still the last write
                    logger.warning("%s: dropping an unreadable last line (%s)", self.path, exc)
                    good_bytes -= len(raw) + 1
                    break
                raise ValueError(f"{self.path}, line {number}: corrupt ASR cache line ({exc}); delete the file to start over") from exc
            if number == 1:
                if record.get("meta") != self.meta:
                    raise ValueError(f"{self.path}: cache header {record.get('meta')} does not match {self.meta}")
                continue
            self.entries[record["id"]] = record
        if good_bytes != len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(good_bytes)

    def lookup(self, utterance_id: str, audio_path: str) -> str | None:
        """The cached text if the same audio file (size and mtime) was transcribed, else None."""
        entry = self.entries.get(utterance_id)
        if entry is None:
            return None
        try:
            size, mtime_ns = _file_key(audio_path)
        except OSError:
            return None
        if entry["size"] != size or entry["mtime_ns"] != mtime_ns:
            return None
        return entry["text"]

    def append(self, records: Sequence[dict]) -> None:
        """Add one batch with a single write (+ fsync), so a crash loses at most this batch."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        lines = []
        if not os.path.exists(self.path) or os.path.getsize(self.path) == 0:
            lines.append(json.dumps({"meta": self.meta}, sort_keys=True))
        lines += [json.dumps(record, ensure_ascii=False) for record in records]
        payload = ("\n".join(lines) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        for record in records:
            self.entries[record["id"]] = record


# --------------------------------------------------------------------------------------------- ASR
def _build_asr_pipeline(model: str, device, dtype):
    import torch
    from transformers import pipeline

    if device is None:
        device = 0 if torch.cuda.is_available() else -1
    if isinstance(dtype, str) and dtype != "auto":
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"dtype {dtype!r} is not a torch dtype name (float16, bfloat16, float32, auto)")
        dtype = getattr(torch, dtype)
    kwargs = {} if dtype is None else {"dtype": dtype}
    return pipeline("automatic-speech-recognition", model=model, device=device, **kwargs)


def _run_asr(asr_pipeline, waves: list, sampling_rate: int, batch_size: int, generate_kwargs: Mapping | None) -> list[str]:
    """One batch through the pipeline; the texts, stripped, in input order."""
    inputs = [{"raw": wave, "sampling_rate": sampling_rate} for wave in waves]
    kwargs = {"generate_kwargs": dict(generate_kwargs)} if generate_kwargs else {}
    outputs = asr_pipeline(inputs, batch_size=batch_size, **kwargs)
    return [output["text"].strip() for output in outputs]


def _model_name(model) -> str:
    if isinstance(model, str):
        return model
    name = getattr(getattr(model, "model", None), "name_or_path", None)
    if not name:
        raise ValueError("pass the ASR model as a name/path, or a pipeline whose model has a name_or_path")
    return name


def transcribe(
    data: datasets.Dataset | datasets.DatasetDict,
    *,
    model=DEFAULT_ASR_MODEL,
    batch_size: int = 16,
    cache_dir: str | os.PathLike | None = None,
    splits: Sequence[str] | None = None,
    overwrite: bool = False,
    generate_kwargs: Mapping[str, Any] | None = None,
    device=None,
    dtype=None,
    progress: bool = True,
) -> dict[str, str]:
    """ASR text of every row (of ``splits``, default all) as {utterance id: text}.

    ``model`` is any HF speech-recognition model name or path (or a ready pipeline). Rows already
    in the cache for the same audio file are not run again unless ``overwrite``; new results are
    appended to the cache one batch at a time. ``generate_kwargs`` (e.g. ``{"language": "en",
    "task": "transcribe"}`` for Whisper) are passed to generation and are part of the cache key.
    A model is known to the cache by its name or path: after retraining a local model in place,
    pass ``overwrite=True``. Under ``accelerate launch`` the rows are shared out over the processes
    (see the module docstring); every process returns the full result.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    corpus = _as_dataset_dict(data)
    if splits is not None:
        unknown = sorted(set(splits) - set(corpus))
        if unknown:
            raise ValueError(f"splits {unknown} not in the data (has {list(corpus)})")
        corpus = datasets.DatasetDict({name: corpus[name] for name in splits})

    rows: dict[str, str] = {}  # id -> audio path, in corpus order
    clashes = []
    for split, dataset in corpus.items():
        for utterance_id, audio in zip(dataset["id"], dataset["audio"]):
            if not utterance_id or not audio:
                raise ValueError(f"{split}: row {utterance_id!r} needs both an id and an audio path to be transcribed")
            if utterance_id in rows and rows[utterance_id] != audio:
                clashes.append(f"{utterance_id}: {rows[utterance_id]} and {audio}")
            rows[utterance_id] = audio
    if clashes:
        raise ValueError(f"utterance ids must be unique; {len(clashes)} ids name two audio files: {clashes[:10]}")

    name = _model_name(model)
    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    state = _process_state()
    is_main = state is None or state.is_main_process
    cache = ASRCache(cache_dir, name, generate_kwargs)
    if is_main and cache.merge_parts():  # parts a killed distributed run left: theirs is finished work
        logger.info("ASR cache %s: merged the part files of an interrupted distributed run", cache.path)
    if state is not None:
        state.wait_for_everyone()
        cache = ASRCache(cache_dir, name, generate_kwargs)  # what the main process merged
    texts: dict[str, str] = {}
    todo = []
    for utterance_id, audio in rows.items():
        cached = None if overwrite else cache.lookup(utterance_id, audio)
        if cached is None:
            todo.append((utterance_id, audio))
        else:
            texts[utterance_id] = cached
    logger.info("ASR %s: %d utterances, %d cached in %s, %d to transcribe", name, len(rows), len(texts), cache.path, len(todo))
    if not todo:
        return {utterance_id: texts[utterance_id] for utterance_id in rows}

    if state is not None:
        mine = todo[state.process_index :: state.num_processes]  # dealt out in turn: disjoint, together all
        writer = ASRCache(cache_dir, name, generate_kwargs, part=state.process_index)
        if device in (None, "cuda") and state.device.type != "cpu":
            device = state.device  # each process on its own accelerator, not all on the first
        logger.info("ASR process %d/%d: %d rows to transcribe", state.process_index, state.num_processes, len(mine))
    else:
        mine, writer = todo, cache
    if mine:
        _transcribe_rows(mine, writer, model, name, device, dtype, batch_size, generate_kwargs, progress and is_main)
    if state is not None:
        state.wait_for_everyone()  # every part is complete
        if is_main:
            cache.merge_parts()
        state.wait_for_everyone()
        writer = cache = ASRCache(cache_dir, name, generate_kwargs)
    missing = [utterance_id for utterance_id, _ in todo if utterance_id not in writer.entries]
    if missing:
        raise RuntimeError(f"ASR left {len(missing)} rows without a transcript (first: {missing[:5]})")
    texts.update((utterance_id, writer.entries[utterance_id]["text"]) for utterance_id, _ in todo)
    return {utterance_id: texts[utterance_id] for utterance_id in rows}


def _process_state():
    """accelerate's process state under a multi-process launch (None in a single process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from ser_hf.features import distributed_state

    return distributed_state()


def _transcribe_rows(todo, cache: ASRCache, model, name: str, device, dtype, batch_size: int, generate_kwargs, progress: bool) -> None:
    """Run ASR over ``todo`` ((id, audio path) pairs), appending every batch to ``cache``."""
    from tqdm.auto import tqdm

    asr_pipeline = _build_asr_pipeline(model, device, dtype) if isinstance(model, str) else model
    sampling_rate = asr_pipeline.feature_extractor.sampling_rate
    with tqdm(total=len(todo), desc=f"ASR {os.path.basename(name.rstrip('/'))}", unit="utt", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            keys = [_file_key(audio) for _, audio in batch]  # before decoding: a file edited meanwhile re-runs
            waves = [load_audio(audio, sampling_rate) for _, audio in batch]
            outputs = _run_asr(asr_pipeline, waves, sampling_rate, batch_size, generate_kwargs)
            if len(outputs) != len(batch):
                raise RuntimeError(f"the ASR pipeline returned {len(outputs)} texts for {len(batch)} inputs")
            records = [
                {"id": utterance_id, "audio": audio, "size": size, "mtime_ns": mtime_ns, "text": text}
                for (utterance_id, audio), (size, mtime_ns), text in zip(batch, keys, outputs)
            ]
            cache.append(records)
            bar.update(len(batch))


# ---------------------------------------------------------------------------------------- corpora
def prepare_transcripts(
    corpus: datasets.DatasetDict,
    *,
    transcript_source: str | Mapping[str, str] | None = None,
    **transcribe_kwargs,
) -> tuple[datasets.DatasetDict, dict[str, dict[str, int]]]:
    """The corpus with each split's ``transcript`` taken from its source, running ASR only where needed.

    Returns the corpus and {split: {"reference": n, "asr": m}}. ``transcribe_kwargs`` go to `transcribe`.
    """
    mapping = parse_transcript_source(transcript_source)
    for split in corpus:  # every split must be covered before any ASR time is spent
        source_for_split(mapping, split)
    needed = rows_needing_asr(corpus, mapping)
    asr = transcribe(needed, **transcribe_kwargs) if any(len(part) for part in needed.values()) else {}
    return select_transcripts(corpus, mapping, asr)


def save_manifest(corpus: datasets.DatasetDict, path: str | os.PathLike) -> str:
    """Write the corpus as a JSONL manifest in the common schema (atomically); ``corpus: manifest`` reads it.

    Audio paths are written absolute so the file works wherever it is moved.
    """
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() != ".jsonl":
        raise ValueError(f"{path}: the transcribed manifest is written as JSON lines; use a .jsonl file name")
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            for split, dataset in corpus.items():
                for row in dataset.to_list():
                    record = {name: row.get(name) for name in COLUMNS}
                    for name in ATTRIBUTES:  # stored as float32: write 3.4, not 3.4000000953674316
                        if record[name] is not None:
                            record[name] = float(str(np.float32(record[name])))
                    record["audio"] = os.path.abspath(record["audio"]) if record["audio"] else None
                    record["split"] = record["split"] or split
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
