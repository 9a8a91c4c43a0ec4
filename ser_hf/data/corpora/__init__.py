"""Corpus registry: a name -> what its labels are and how to load it into the common schema.

Every loader returns a ``datasets.DatasetDict`` of paths and metadata (see ``schema.py``) and never
decodes audio. Each corpus module exposes ``LABELS``, ``LABEL_NAMES`` and ``ATTRIBUTE_RANGE``; the
spec is read from there so the facts live in one place. "synthetic" is imported on first use so
this package works whether or not that module is present.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

import datasets

from ser_hf.data.corpora import crema_d, emodb, esd, iemocap, manifest, meld, msp_improv, msp_podcast, ravdess, tess


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    labels: tuple[str, ...] | None  # None: not fixed by the corpus (e.g. a user manifest)
    label_names: dict[str, str] = field(default_factory=dict)  # label -> readable name
    attribute_range: tuple[float, float] | None = None  # None: no dimensional ratings
    loader: Callable[..., datasets.DatasetDict] | None = None


def _spec_from_module(name: str, module: ModuleType, loader_name: str) -> CorpusSpec:
    labels = None if module.LABELS is None else tuple(module.LABELS)
    names = getattr(module, "LABEL_NAMES", None) or {label: label for label in labels or ()}
    attribute_range = None if module.ATTRIBUTE_RANGE is None else tuple(module.ATTRIBUTE_RANGE)
    return CorpusSpec(name, labels, dict(names), attribute_range, getattr(module, loader_name))


CORPORA: dict[str, CorpusSpec] = {
    "emodb": _spec_from_module("emodb", emodb, "load_emodb"),
    "msp_podcast": _spec_from_module("msp_podcast", msp_podcast, "load_msp_podcast"),
    "ravdess": _spec_from_module("ravdess", ravdess, "load_ravdess"),
    "manifest": _spec_from_module("manifest", manifest, "load_manifest"),
    "iemocap": _spec_from_module("iemocap", iemocap, "load_iemocap"),
    "crema_d": _spec_from_module("crema_d", crema_d, "load_crema_d"),
    "msp_improv": _spec_from_module("msp_improv", msp_improv, "load_msp_improv"),
    "meld": _spec_from_module("meld", meld, "load_meld"),
    "esd": _spec_from_module("esd", esd, "load_esd"),
    "tess": _spec_from_module("tess", tess, "load_tess"),
}
# Registered on first use: (module, loader function).
_LAZY = {"synthetic": ("ser_hf.data.corpora.synthetic", "load_synthetic")}


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def available_corpora() -> list[str]:
    return sorted({*CORPORA, *_LAZY})


def get_corpus_spec(name: str) -> CorpusSpec:
    """Spec for ``name`` (case and '-'/'_' insensitive: "MSP-Podcast" works)."""
    key = _key(name)
    if key not in CORPORA and key in _LAZY:
        module_name, loader_name = _LAZY[key]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            raise ValueError(f"corpus {name!r} is registered but {module_name} is not available") from exc
        CORPORA[key] = _spec_from_module(key, module, loader_name)
    if key not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; available: {available_corpora()}")
    return CORPORA[key]


def load_corpus(name: str, path, **kwargs) -> datasets.DatasetDict:
    """Load corpus ``name`` from ``path`` (a folder, or the file for "manifest") with loader kwargs."""
    return get_corpus_spec(name).loader(path, **kwargs)


__all__ = ["CORPORA", "CorpusSpec", "available_corpora", "get_corpus_spec", "load_corpus"]
