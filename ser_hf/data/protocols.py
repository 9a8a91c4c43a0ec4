"""What a run's data arguments do to a loaded corpus beyond loading it: the evaluation protocol.

* ``label_map`` (cross-corpus): classes renamed onto a shared set, other classes dropped and counted
  (`ser_hf.data.label_maps`);
* ``cv_folds`` + ``cv_fold`` (cross-validation): every row regrouped into that fold's train/test
  (and dev with ``cv_dev_fold``) splits (`ser_hf.data.folds`).

Kept here, below ``experiment``, so every command that loads data (train, evaluate, extract, cv,
crosscorpus) applies the same protocol from the same fields.
"""
from __future__ import annotations

import datasets


def apply_evaluation_protocol(corpus: datasets.DatasetDict, data_args) -> datasets.DatasetDict:
    """``corpus`` with the run's label map, then its cross-validation fold, applied (each if set)."""
    if getattr(data_args, "label_map", None):
        from ser_hf.data.label_maps import apply_label_map, resolve_label_map

        corpus, _ = apply_label_map(corpus, data_args.corpus, resolve_label_map(data_args.label_map))
    folds, fold = getattr(data_args, "cv_folds", None), getattr(data_args, "cv_fold", None)
    if folds is not None or fold is not None:
        from ser_hf.data.folds import apply_fold

        if folds is None or fold is None:
            raise ValueError("cv_folds and cv_fold go together (a protocol and the held-out fold)")
        corpus = apply_fold(corpus, folds, fold, dev_fold=data_args.cv_dev_fold, corpus_name=data_args.corpus)
    return corpus


def shared_label_spec(data_args, attribute_range) -> tuple[list[str], dict[str, str], tuple[float, float] | None]:
    """(classes, names, attribute range) of a run with a ``label_map``: the shared class set."""
    from ser_hf.data.label_maps import resolve_label_map

    shared = list(resolve_label_map(data_args.label_map).classes)
    if data_args.labels and list(data_args.labels) != shared:
        raise ValueError(f"labels {list(data_args.labels)} disagree with label_map {data_args.label_map!r} classes {shared}")
    attribute_range = tuple(data_args.attribute_range) if data_args.attribute_range else attribute_range
    return shared, {name: name for name in shared}, attribute_range
