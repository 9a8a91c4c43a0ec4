"""Cross-validation folds: which utterances are held out in fold k of a protocol.

A fold protocol groups whole speakers, so no speaker is ever both trained and tested on:

* ``speaker``  one fold per speaker (leave-one-speaker-out), folds in sorted speaker order.
* ``session``  one fold per recording session, for corpora whose speaker ids are a session and a
               gender letter (IEMOCAP ``Ses01F``/``Ses01M``, MSP-IMPROV ``F01``/``M01``): leave-one-session-out.
* ``<K>``      K speaker-independent folds: speakers are spread over the folds gender-interleaved
               (a fixed shuffle, seed 0), so every fold holds about the same share of each gender.
* a preset     a corpus's published protocol by name (`PRESETS`): ``iemocap_loso`` etc.

`apply_fold` regroups the rows of every split of a corpus into ``train`` and ``test`` (and ``dev``
= the next fold, when asked), so one fold is an ordinary run of ``ser-hf train`` with
``cv_folds``/``cv_fold`` set; `ser-hf cv` runs them all (``ser_hf.sweeps.cv``).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import datasets
import numpy as np

from ser_hf.data.splits import order_splits


@dataclass(frozen=True)
class FoldProtocol:
    """A published evaluation protocol: the corpus it belongs to and its fold scheme."""

    corpus: str
    scheme: str
    description: str


PRESETS: dict[str, FoldProtocol] = {
    "iemocap_loso": FoldProtocol(
        "iemocap", "session", "IEMOCAP 5-fold leave-one-session-out (train on 4 sessions, test on the 5th)"
    ),
    "emodb_loso": FoldProtocol("emodb", "speaker", "EmoDB leave-one-speaker-out (10 folds)"),
    "ravdess_speaker_folds": FoldProtocol(
        "ravdess", "6", "RAVDESS 6 speaker-independent folds of 4 actors (2 female, 2 male) each"
    ),
    "crema_d_speaker_folds": FoldProtocol(
        "crema_d", "5", "CREMA-D 5 speaker-independent folds (91 actors, gender-interleaved)"
    ),
    "msp_improv_loso": FoldProtocol("msp_improv", "session", "MSP-IMPROV 6-fold leave-one-session-out"),
}

_SESSION = re.compile(r"^(?P<session>.+?)[_-]?(?P<gender>[MF])$|^(?P<gender_first>[MF])[_-]?(?P<number>\d+)$")


def resolve_scheme(folds: str, corpus: str | None = None) -> str:
    """The fold scheme of ``folds`` (a scheme, a K, or a preset name, which must match ``corpus``)."""
    text = str(folds).strip().lower()
    if text in PRESETS:
        preset = PRESETS[text]
        if corpus is not None and corpus.strip().lower().replace("-", "_") != preset.corpus:
            raise ValueError(f"fold preset {text!r} is for corpus {preset.corpus!r}, not {corpus!r}")
        return preset.scheme
    if text in ("speaker", "session") or (text.isdigit() and int(text) >= 2):
        return text
    raise ValueError(
        f"cv folds must be 'speaker', 'session', a number K >= 2 or a preset ({', '.join(PRESETS)}); got {folds!r}"
    )


def _rows(corpus: datasets.DatasetDict) -> list[dict]:
    return [row for name in corpus for row in corpus[name].to_list()]


def session_of(speaker: str) -> str:
    """``Ses01F`` -> ``Ses01`` (IEMOCAP), ``F01`` -> ``01`` (MSP-IMPROV); other ids are an error."""
    match = _SESSION.match(str(speaker))
    if match is not None and match["number"] is not None:
        return match["number"]
    if match is None:
        raise ValueError(
            f"speaker {speaker!r} is not <session><M|F> or <M|F><session>, so session folds cannot be formed "
            "(use --folds speaker or a number of folds)"
        )
    return match["session"]


def fold_assignment(rows: list[dict], folds: str, corpus: str | None = None) -> tuple[list[str], dict[str, int]]:
    """(fold names, speaker -> fold index) for the rows; every row must have a speaker."""
    scheme = resolve_scheme(folds, corpus)
    missing = [str(row.get("id")) for row in rows if row.get("speaker") in (None, "")]
    if missing:
        raise ValueError(f"{len(missing)} rows have no speaker, so speaker-independent folds are impossible (e.g. {missing[:5]})")
    speakers = sorted({str(row["speaker"]) for row in rows})
    if scheme == "speaker":
        names = speakers
        return names, {spk: i for i, spk in enumerate(speakers)}
    if scheme == "session":
        sessions = sorted({session_of(spk) for spk in speakers})
        return sessions, {spk: sessions.index(session_of(spk)) for spk in speakers}
    k = int(scheme)
    if k > len(speakers):
        raise ValueError(f"{k} folds need at least {k} speakers; the corpus has {len(speakers)}")
    genders: dict[str, Counter] = {}
    for row in rows:
        genders.setdefault(str(row["speaker"]), Counter())[row.get("gender")] += 1
    by_gender: dict[str, list[str]] = {}
    for spk in speakers:
        by_gender.setdefault(str(genders[spk].most_common(1)[0][0]), []).append(spk)
    rng = np.random.default_rng(0)
    # Dealt round-robin gender by gender, continuing the count: every fold gets its share of each gender.
    order = [spk for key in sorted(by_gender) for spk in rng.permutation(by_gender[key]).tolist()]
    assignment = {spk: i % k for i, spk in enumerate(order)}
    names = [" ".join(sorted(s for s, f in assignment.items() if f == i)) for i in range(k)]
    return names, assignment


def num_folds(corpus: datasets.DatasetDict, folds: str, corpus_name: str | None = None) -> list[str]:
    """The fold names (what each fold holds out) of a loaded corpus."""
    return fold_assignment(_rows(corpus), folds, corpus_name)[0]


def apply_fold(
    corpus: datasets.DatasetDict, folds: str, fold: int, *, dev_fold: bool = False, corpus_name: str | None = None
) -> datasets.DatasetDict:
    """Every row of every split regrouped into ``test`` (fold ``fold``), optionally ``dev`` (the
    next fold) and ``train`` (the rest). Returns a DatasetDict with exactly those splits."""
    rows = _rows(corpus)
    names, assignment = fold_assignment(rows, folds, corpus_name)
    if not 0 <= int(fold) < len(names):
        raise ValueError(f"cv_fold={fold} is out of range: protocol {folds!r} has {len(names)} folds (0..{len(names) - 1})")
    if dev_fold and len(names) < 3:
        raise ValueError(f"a dev fold needs at least 3 folds; {folds!r} has {len(names)}")
    dev = (int(fold) + 1) % len(names) if dev_fold else None
    parts: dict[str, list[int]] = {"train": [], "dev": [], "test": []}
    for index, row in enumerate(rows):
        f = assignment[str(row["speaker"])]
        parts["test" if f == int(fold) else "dev" if f == dev else "train"].append(index)
    flat = datasets.concatenate_datasets([corpus[name] for name in corpus]) if len(corpus) > 1 else next(iter(corpus.values()))
    out = {}
    for name, indices in parts.items():
        if name == "dev" and not dev_fold:
            continue
        subset = flat.select(indices)
        if "split" in subset.column_names:
            features = subset.features.copy()
            subset = subset.remove_columns("split").add_column("split", [name] * len(subset)).cast(features)
        out[name] = subset
    return order_splits(datasets.DatasetDict(out))


__all__ = ["FoldProtocol", "PRESETS", "apply_fold", "fold_assignment", "num_folds", "resolve_scheme", "session_of"]
