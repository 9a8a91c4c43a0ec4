"""Label maps to a class set shared by several corpora, for training on one corpus and testing on
another ("cross-corpus" evaluation).

Each corpus names its emotions its own way (EmoDB's German letters W/F/T/N, MELD's joy/anger...).
`SHARED_MAPS["shared"]` maps every registered corpus onto the four classes most corpora share:
neutral, happy, angry, sad. Rows whose class has no counterpart (EmoDB's boredom, CREMA-D's disgust,
RAVDESS's calm...) are dropped *and counted*; rows without a label stay (attribute tasks).

A custom map is a YAML file::

    classes: [neutral, happy, angry, sad]
    corpora:
      emodb: {N: neutral, F: happy, W: angry, T: sad}
      my_manifest: {neu: neutral, joy: happy, ang: angry, sad: sad}
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass

import datasets

logger = logging.getLogger(__name__)

SHARED_CLASSES = ("neutral", "happy", "angry", "sad")
_IDENTITY = {name: name for name in SHARED_CLASSES}
_MSP = {"N": "neutral", "H": "happy", "A": "angry", "S": "sad"}


@dataclass(frozen=True)
class LabelMap:
    """A shared class list and, per corpus, its label -> shared class (labels not listed are dropped)."""

    classes: tuple[str, ...]
    corpora: dict[str, dict[str, str]]

    def for_corpus(self, corpus: str) -> dict[str, str]:
        key = corpus.strip().lower().replace("-", "_")
        if key not in self.corpora:
            raise ValueError(f"the label map has no entry for corpus {corpus!r} (it maps {sorted(self.corpora)})")
        mapping = self.corpora[key]
        outside = sorted(set(mapping.values()) - set(self.classes))
        if outside:
            raise ValueError(f"the label map sends {corpus} labels to {outside}, which are not among its classes {list(self.classes)}")
        return mapping


SHARED_MAPS = {
    "shared": LabelMap(
        SHARED_CLASSES,
        {
            "emodb": {"N": "neutral", "F": "happy", "W": "angry", "T": "sad"},
            "ravdess": _IDENTITY,
            "iemocap": _IDENTITY,
            "msp_improv": _IDENTITY,
            "crema_d": _IDENTITY,
            "esd": _IDENTITY,
            "tess": _IDENTITY,
            "meld": {"neutral": "neutral", "joy": "happy", "anger": "angry", "sadness": "sad"},
            "msp_podcast": _MSP,
            "synthetic": _MSP,
        },
    )
}


def resolve_label_map(name_or_path: str) -> LabelMap:
    """A built-in map by name (``shared``) or a YAML file (see the module docstring)."""
    if name_or_path in SHARED_MAPS:
        return SHARED_MAPS[name_or_path]
    if not os.path.isfile(name_or_path):
        raise ValueError(f"label_map {name_or_path!r} is neither a built-in map ({list(SHARED_MAPS)}) nor a YAML file")
    import yaml

    with open(name_or_path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data.get("classes"), list) or not isinstance(data.get("corpora"), dict):
        raise ValueError(f"{name_or_path}: a label map needs 'classes' (a list) and 'corpora' (corpus -> {{label: class}})")
    corpora = {str(k).lower().replace("-", "_"): {str(a): str(b) for a, b in (v or {}).items()} for k, v in data["corpora"].items()}
    return LabelMap(tuple(map(str, data["classes"])), corpora)


def apply_label_map(
    corpus: datasets.DatasetDict, corpus_name: str, label_map: LabelMap
) -> tuple[datasets.DatasetDict, dict[str, Counter]]:
    """Labels renamed to the shared classes; labelled rows outside them removed.

    Returns the corpus and, per split, how many rows of each original class were dropped. The
    soft-label column is removed (its class list no longer applies).
    """
    mapping = label_map.for_corpus(corpus_name)
    out, dropped = {}, {}
    for split, dataset in corpus.items():
        labels = dataset["label"]
        keep = [i for i, label in enumerate(labels) if label is None or label in mapping]
        dropped[split] = Counter(label for label in labels if label is not None and label not in mapping)
        subset = dataset.select(keep)
        if "label_distribution" in subset.column_names:
            subset = subset.remove_columns("label_distribution")
        features = subset.features.copy()
        mapped = [None if label is None else mapping[label] for label in subset["label"]]
        out[split] = subset.remove_columns("label").add_column("label", mapped).cast(features)
        out[split] = out[split].select_columns([c for c in dataset.column_names if c != "label_distribution"])  # column order kept
    total = sum((c for c in dropped.values()), Counter())
    if total:
        logger.info("label map: %d %s rows outside %s dropped: %s", sum(total.values()), corpus_name, list(label_map.classes), dict(total))
    return datasets.DatasetDict(out), dropped
