"""Everything a run will read, checked before any model is built: the one validation pass.

`ser-hf validate` and `ser-hf train` call `check_run_data` with the same arguments, so validate
says OK exactly when train would start. It checks the options (task, modality, splits, label set,
attribute range), loads the corpus keeping bad lines instead of stopping at the first, validates
every row of the splits the run reads (parse problems and row problems in one report, each named
by file and line), then the data as a whole (a class with no training rows, a split with no
usable rows). Warnings (silent, clipped, low-rate or long audio; unlabelled training rows) are
counted and listed but never stop a run.
"""
from __future__ import annotations

import inspect
import logging
import os
from collections import Counter
from dataclasses import dataclass, field

import datasets

from ser_hf.arguments import DataArguments
from ser_hf.data.corpora import CorpusSpec, get_corpus_spec
from ser_hf.data.protocols import apply_evaluation_protocol, shared_label_spec
from ser_hf.data.schema import ATTRIBUTES, BOOKKEEPING_COLUMNS, INVALID_SPLIT, column_values
from ser_hf.data.validation import RowProblem, ValidationReport, drop_bad_rows, format_problems, validate_dataset
from ser_hf.errors import ConfigError, DataError, SERUserError

logger = logging.getLogger(__name__)

TASKS = ("categorical", "attributes", "multitask")
MODALITIES = ("speech", "text")
DROPPED_ROWS_FILE = "dropped_rows.csv"


@dataclass
class CheckedData:
    """The splits a run reads, validated (bad rows dropped if asked), plus what the model needs."""

    corpus: datasets.DatasetDict
    report: ValidationReport
    labels: list[str] | None
    label_names: dict | None
    attribute_range: tuple[float, float] | None
    dropped: list[RowProblem] = field(default_factory=list)


def used_splits(data_args: DataArguments) -> list[str]:
    """Split names the run reads, in order (``train+dev`` counts both)."""
    names = []
    for name in (data_args.train_split, data_args.eval_split, data_args.test_split):
        if name and name.lower() != "none":
            names += [part for part in name.split("+") if part not in names]
    return names


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(choices)}")


def load_run_corpus(
    data_args: DataArguments, *, required_columns=(), keep_invalid_rows: bool = False
) -> datasets.DatasetDict:
    """Load the configured corpus; option and loader problems become `ConfigError`/`DataError`.

    ``required_columns`` and ``keep_invalid_rows`` reach loaders that take them (the manifest
    loader); others ignore them.
    """
    if getattr(data_args, "dataset_name", None):  # a Hugging Face `datasets` input (ser_hf.data.hf_datasets)
        from ser_hf.data.hf_datasets import load_from_data_args

        try:
            corpus = load_from_data_args(data_args)
        except SERUserError:
            raise
        except FileNotFoundError as error:
            raise DataError(f"dataset {data_args.dataset_name}: {error}") from error
        except ValueError as error:
            raise DataError(f"dataset {data_args.dataset_name}: {error}") from error
        class_labels = corpus.class_labels
        try:
            corpus = apply_evaluation_protocol(corpus, data_args)
        except ValueError as error:
            raise ConfigError(str(error)) from error
        corpus.class_labels = class_labels
        return corpus
    spec = get_corpus_spec_or_error(data_args.corpus)
    options = data_args.corpus_options or {}
    if not isinstance(options, dict):
        raise ConfigError(f"corpus_options must be a mapping of loader options, got {options!r}")
    parameters = inspect.signature(spec.loader).parameters
    first = next(iter(parameters.values()), None)
    if data_args.data_path is None and first is not None and first.default is inspect.Parameter.empty:
        raise ConfigError(f"corpus {spec.name!r} needs --data_path (its folder, or the manifest file)")
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        unknown = sorted(set(options) - set(parameters))
        if unknown:
            accepted = [name for name in list(parameters)[1:] if name not in ("keep_invalid_rows", "required_columns")]
            raise ConfigError(
                f"corpus_options {unknown} are not options of the {spec.name!r} loader (its options: {accepted})"
            )
    extra = {}
    if "required_columns" in parameters:
        extra["required_columns"] = tuple(required_columns)
    if "keep_invalid_rows" in parameters:
        extra["keep_invalid_rows"] = keep_invalid_rows
    if "labels" in parameters and data_args.labels and "labels" not in options:
        extra["labels"] = list(data_args.labels)  # aligns a manifest's label_distribution / label_votes
    try:
        corpus = spec.loader(data_args.data_path, **options, **extra)
    except SERUserError:
        raise
    except FileNotFoundError as error:
        raise DataError(f"{spec.name} corpus: {error}") from error
    except (ValueError, UnicodeDecodeError) as error:
        raise DataError(f"{spec.name} corpus at {data_args.data_path}: {error}") from error
    # The evaluation protocol (label_map, cv fold); unreadable lines stay aside, to be reported.
    unreadable = corpus.pop(INVALID_SPLIT, None) if isinstance(corpus, dict) else None
    try:
        corpus = apply_evaluation_protocol(corpus, data_args)
    except SERUserError:
        raise
    except ValueError as error:
        raise ConfigError(str(error)) from error
    if unreadable is not None:
        corpus[INVALID_SPLIT] = unreadable
    return corpus


def _label_set(data_args: DataArguments, spec: CorpusSpec, corpus, task: str) -> tuple[list[str] | None, dict | None]:
    """(class codes, readable names): the label map's shared set, the user's, or the corpus's."""
    if getattr(data_args, "label_map", None):  # cross-corpus: the shared class set replaces the corpus's own
        try:
            labels, names, _ = shared_label_spec(data_args, spec.attribute_range)
        except ValueError as error:
            raise ConfigError(str(error)) from error
        return labels, names
    labels = list(data_args.labels) if data_args.labels else (list(spec.labels) if spec.labels else None)
    if labels is None and getattr(data_args, "dataset_name", None) and data_args.label_column_name:
        # a `datasets` input: its ClassLabel names in the dataset's order, else the labels it holds, sorted
        labels = getattr(corpus, "class_labels", None) or sorted(
            {label for ds in corpus.values() for label in column_values(ds, "label") if label is not None}) or None
    if labels is None and task != "attributes":
        found, first = Counter(), {}
        for name, ds in corpus.items():
            sources = column_values(ds, "source") if "source" in ds.column_names else None
            for i, label in enumerate(column_values(ds, "label")):
                if label is not None:
                    found[label] += 1
                    first.setdefault(label, sources[i] if sources else f"{name}[{i}]")

        def count(label: str) -> str:  # a rare class may be a typo: say where it is
            n = found[label]
            return f"{label} ({n} row{'s' if n > 1 else ''}{', first at ' + first[label] if n <= 3 else ''})"

        listed = ", ".join(count(label) for label in sorted(found)) or "none"
        suggestion = " ".join(sorted(found)) or "CLASS1 CLASS2"
        raise ConfigError(
            f"task {task!r} needs the class codes, and corpus {spec.name!r} has no fixed label set: add "
            f"`labels: [{', '.join(sorted(found)) or 'CLASS1, CLASS2'}]` to the config or `--labels {suggestion}`, "
            f"listing only real classes (classes found in the data: {listed})"
        )
    return labels, dict(spec.label_names) or None


def _attribute_range(data_args: DataArguments, spec: CorpusSpec, corpus, task: str):
    declared = data_args.attribute_range
    if declared is not None:
        if len(declared) != 2 or not float(declared[0]) < float(declared[1]):
            raise ConfigError(f"attribute_range must be two numbers LOW HIGH with LOW < HIGH, got {declared}")
        return float(declared[0]), float(declared[1])
    if spec.attribute_range is not None:
        return spec.attribute_range
    values = [v for ds in corpus.values() for name in ATTRIBUTES for v in column_values(ds, name) if v is not None]
    if task != "categorical" or values:
        if task == "categorical":
            return None  # attributes are not read by a categorical run; nothing to check them against
        seen = f" (values in the data span {min(values):g} to {max(values):g})" if values else ""
        raise ConfigError(
            f"task {task!r} needs the scale of the attributes and corpus {spec.name!r} does not fix one: add "
            f"`attribute_range: [LOW, HIGH]` to the config or `--attribute_range LOW HIGH`{seen}"
        )
    return None


def _class_checks(report: ValidationReport, labels, train_parts, task: str, allow_missing: bool) -> None:
    """Data-level label problems: classes without training rows, splits without usable rows."""
    train_counts = Counter()
    for part in train_parts:
        train_counts.update(report.label_counts.get(part, Counter()))
    if task != "attributes":
        labelled = sum(train_counts.values())
        if labelled == 0:
            report.errors.append(
                f"no row of the training split {'+'.join(train_parts)!r} has a (known) label, so a {task} model has "
                f"nothing to learn from; check the label column (manifest: `label`, or map yours with "
                f"corpus_options.column_mapping) and the label set"
            )
            return
        for label in labels or ():
            if train_counts[label]:
                continue
            elsewhere = [
                f"{split}: {counts[label]} rows, e.g. {report.label_examples[(split, label)]}"
                for split, counts in report.label_counts.items()
                if split not in train_parts and counts[label]
            ]
            where = "; ".join(elsewhere) if elsewhere else "no rows in any split read"
            message = (
                f"class {label!r} has no training rows ({where}); the model cannot learn it and class-weighted "
                f"losses divide by its count. Add training rows, remove it from `labels`, or pass "
                f"--allow_missing_classes true to train anyway"
            )
            (report.warnings if allow_missing else report.errors).append(message)


def _unlabelled_rows_warning(report: ValidationReport, corpus, train_parts, task: str) -> None:
    """Training rows with no target for the task are left out of training: say how many, and which."""
    bad = report.bad_indices()
    for part in train_parts:
        ds = corpus[part]
        if task == "categorical":
            missing = [i for i, label in enumerate(column_values(ds, "label")) if label is None]
        elif task == "attributes":
            columns = [column_values(ds, name) for name in ATTRIBUTES]
            missing = [i for i, values in enumerate(zip(*columns)) if all(v is None for v in values)]
        else:
            continue
        missing = [i for i in missing if i not in bad.get(part, ())]
        if missing:
            sources = column_values(ds, "source") if "source" in ds.column_names else None
            where = [sources[i] if sources else f"{part}[{i}]" for i in missing]
            report.add_warning(len(missing), f"no {task} target in split {part!r}; not used for training", where)


def check_run_data(
    data_args: DataArguments,
    *,
    task: str,
    modality: str = "speech",
    sampling_rate: int | None = 16000,
    max_seconds: float | None = None,
    scan_audio: bool | None = None,
    progress: bool | None = None,
    training: bool = True,
    header_cache: str | None = None,
    trust_header_cache: bool = False,
) -> CheckedData:
    """Check options and every row a run reads; raise one `DataError` listing all problems.

    With ``data_args.on_invalid_rows == "drop"``, bad rows (parse problems included) are dropped
    instead and returned in ``dropped``; data-level problems still raise. ``scan_audio`` (default:
    ``data_args.scan_audio``) decodes every file once to warn about silence and clipping.
    ``training=False`` (evaluation) skips the checks about training rows (class coverage).
    Audio files are probed through the header cache shared with length grouping (``header_cache``:
    its path, default beside the audio; ``trust_header_cache``: take its entries without ``stat``,
    for processes that waited for the main one), so a second launch re-opens no unchanged file.
    """
    _check_choice("task", task, TASKS)
    _check_choice("modality", modality, MODALITIES)
    _check_choice("on_invalid_rows", data_args.on_invalid_rows, ("error", "drop"))
    spec = get_corpus_spec_or_error("manifest" if getattr(data_args, "dataset_name", None) else data_args.corpus)
    required = ["audio"] if modality == "speech" else ["transcript"]
    if task in ("categorical", "multitask"):
        required.append("label")
    elif task == "attributes":
        required += list(ATTRIBUTES)
    full = load_run_corpus(data_args, required_columns=required, keep_invalid_rows=True)
    names = used_splits(data_args)
    missing = [name for name in names if name not in full]
    if missing:
        available = [name for name in full if name != INVALID_SPLIT]
        message = (
            f"split {', '.join(map(repr, missing))} not in corpus {spec.name!r} (it has {available}); set "
            f"--train_split/--eval_split/--test_split (none skips one), or give rows that split"
        )
        if INVALID_SPLIT in full:  # the rows may be there, on lines that could not be read
            broken = full[INVALID_SPLIT]
            lines = [f"{where}: {why}" for where, why in zip(broken["source"], broken["invalid"])]
            message = format_problems(f"{message}. Also, {len(lines)} lines could not be read:", lines)
        raise DataError(message) if INVALID_SPLIT in full else ConfigError(message)
    # Only the splits this run reads are validated (an unlabelled challenge test set may sit beside them),
    # plus the lines too broken to know their split.
    corpus = datasets.DatasetDict({name: full[name] for name in full if name in names or name == INVALID_SPLIT})
    corpus.class_labels = getattr(full, "class_labels", None)
    labels, label_names = _label_set(data_args, spec, corpus, task)
    attribute_range = _attribute_range(data_args, spec, corpus, task)
    report = validate_dataset(
        corpus,
        labels=labels if task != "attributes" else None,
        attribute_range=attribute_range,
        require_attributes=task == "attributes" and training,  # evaluation predicts unlabelled rows too
        require_transcript=modality == "text" and data_args.text_column == "transcript",
        sampling_rate=sampling_rate if modality == "speech" else None,
        max_seconds=max_seconds if modality == "speech" else None,
        check_audio=data_args.validate_audio and modality == "speech",
        scan_audio=data_args.scan_audio if scan_audio is None else scan_audio,
        progress=progress,
        cache_path=header_cache,
        trust_cache=trust_header_cache,
    )
    if training:
        train_parts = data_args.train_split.split("+") if data_args.train_split else []
        _class_checks(report, labels, train_parts, task, data_args.allow_missing_classes)
        _unlabelled_rows_warning(report, corpus, train_parts, task)
    dropped: list[RowProblem] = []
    if report.errors or (report.problems and data_args.on_invalid_rows == "error"):
        report.raise_if_errors()
    if report.problems:
        dropped = list(report.problems)
        corpus = drop_bad_rows(corpus, report)
    corpus = datasets.DatasetDict(
        {
            name: ds.remove_columns([c for c in BOOKKEEPING_COLUMNS if c in ds.column_names])
            for name, ds in corpus.items()
            if name != INVALID_SPLIT
        }
    )
    empty = [name for name in names if len(corpus[name]) == 0]
    if empty:
        raise DataError(f"split(s) {empty} have no rows left after dropping the bad ones")
    return CheckedData(corpus, report, labels, label_names, attribute_range, dropped)


def check_evaluation_data(data_args: DataArguments, config, split: str, *, progress: bool | None = None) -> CheckedData:
    """`check_run_data` for scoring a saved model on ``split``: its labels, task and scale are the model's.

    Rows without targets are allowed (an unlabelled challenge test set is predicted, not scored).
    """
    import dataclasses

    from ser_hf.configuration import SERTextConfig

    has_attributes = config.task in ("attributes", "multitask")
    data_args = dataclasses.replace(
        data_args,
        train_split=split,
        eval_split=None,
        test_split=None,
        labels=list(config.labels) if config.labels else data_args.labels,
        attribute_range=data_args.attribute_range or (list(config.attribute_range) if has_attributes else None),
    )
    text = isinstance(config, SERTextConfig)
    return check_run_data(
        data_args,
        task=config.task,
        modality="text" if text else "speech",
        sampling_rate=getattr(config, "sampling_rate", None),
        progress=progress,
        training=False,
    )


def get_corpus_spec_or_error(name: str) -> CorpusSpec:
    try:
        return get_corpus_spec(name)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def split_source(problem: RowProblem) -> tuple[str, str]:
    """(file, line) of a row problem ('' where the loader recorded no line)."""
    if problem.source and ", line " in problem.source:
        file, line = problem.source.rsplit(", line ", 1)
        return file, line
    return "", ""


def write_dropped_rows(path: str, dropped: list[RowProblem]) -> None:
    """The dropped rows as CSV (file, line, split, index, id, reason), written atomically."""
    from ser_hf.io import write_csv_atomic

    rows = [(*split_source(p), p.split, p.index, p.id or "", "; ".join(p.reasons)) for p in dropped]
    write_csv_atomic(path, ("file", "line", "split", "index", "id", "reason"), rows)
    logger.warning("%d rows were dropped; the list is in %s", len(dropped), os.path.abspath(path))
