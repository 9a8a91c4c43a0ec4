"""MSP-IMPROV: six dyadic sessions (one actress, one actor each) with improvised target sentences.

Layout read (as released by UT Dallas MSP lab)::

    Evaluation.txt                                   consensus + per-rater lines (below)
    session1..6/S01A/P/MSP-IMPROV-S01A-F01-P-FM01.wav (the .wav may sit at any depth under root)

A block of ``Evaluation.txt`` starts with ``UTD-IMPROV-<id>.avi; <E>; A:<a>; V:<v>; D:<d> ; N:<n>;``
(E = A angry, H happy, S sad, N neutral, O other, X no agreement; A/V/D on 1-5, averaged over the
raters) followed by one line per rater, ``<rater>; <Angry|Happy|Sad|Neutral|Other>; <comment>; A:..;
V:..; D:..; N:..;``, which give ``label_distribution``. The id ``S01A-F01-P-FM01`` is session 01,
scenario A, speaker F01 (the actress of session 1), recording kind P (natural interaction; R read,
S scripted improvisation, T target improvisation) and turn FM01.

Classes: angry, happy, sad, neutral (O and X rows keep their attributes, label None). Speakers are
``F01``/``M01`` ... so ``cv_folds: session`` (preset ``msp_improv_loso``) is leave-one-session-out.
Default split: session 6 test, session 5 dev, sessions 1-4 train. ``kinds`` filters recording kinds.

Citation: C. Busso et al., "MSP-IMPROV: An acted corpus of dyadic interactions to study emotion
perception", IEEE Transactions on Affective Computing 8(1), 67-80, 2017.
"""
from __future__ import annotations

import logging
import os
import re
from collections import Counter

import datasets

from ser_hf.data.corpora.layout import CorpusLayoutError, require_dir, require_file
from ser_hf.data.schema import rows_to_dataset_dict
from ser_hf.data.splits import order_splits
from ser_hf.data.validation import DataValidationError, format_problems
from ser_hf.data.votes import vote_distribution

logger = logging.getLogger(__name__)

CONSENSUS = {"A": "angry", "H": "happy", "S": "sad", "N": "neutral"}
RATER_CLASSES = {"Angry": "angry", "Happy": "happy", "Sad": "sad", "Neutral": "neutral", "Other": "other"}
LABELS = ("angry", "happy", "sad", "neutral")
LABEL_NAMES = {name: name for name in LABELS}
ATTRIBUTE_RANGE = (1.0, 5.0)
TEST_SESSIONS = ("06",)
DEV_SESSIONS = ("05",)

_HEADER = re.compile(
    r"^UTD-IMPROV-(?P<id>S(?P<session>\d\d)[A-Z]-(?P<speaker>[FM]\d\d)-(?P<kind>[PRST])-[A-Z0-9]+)\.avi;\s*(?P<emo>[A-Z]);"
    r"\s*A:(?P<a>[\d.]+|NaN);\s*V:(?P<v>[\d.]+|NaN);\s*D:(?P<d>[\d.]+|NaN)\s*;.*$"
)
_RATER = re.compile(r"^(?P<rater>[^;]+);\s*(?P<emo>Angry|Happy|Sad|Neutral|Other);")


def _number(text: str) -> float | None:
    return None if text == "NaN" else float(text)


def load_msp_improv(
    root,
    *,
    kinds=("P", "R", "S", "T"),
    test_sessions=TEST_SESSIONS,
    dev_sessions=DEV_SESSIONS,
    on_missing_audio: str = "error",
) -> datasets.DatasetDict:
    """Index MSP-IMPROV under ``root``; audio is not opened.

    A rated utterance without its .wav is an error (all listed) unless ``on_missing_audio="drop"``,
    which leaves it out and logs how many.
    """
    if on_missing_audio not in ("error", "drop"):
        raise ValueError(f"on_missing_audio must be error or drop, got {on_missing_audio!r}")
    root = os.path.abspath(os.fspath(root))
    require_dir(root, "MSP-IMPROV", "the MSP-IMPROV folder with Evaluation.txt and session1..6/")
    labels_path = require_file(os.path.join(root, "Evaluation.txt"), "MSP-IMPROV", "the consensus and rater labels")
    audio = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.lower().endswith(".wav") and name.startswith("MSP-IMPROV-"):
                audio[name[len("MSP-IMPROV-"):-4]] = os.path.join(folder, name)
    if not audio:
        raise CorpusLayoutError(f"MSP-IMPROV: no MSP-IMPROV-*.wav files under {root} (expected session1/S01A/P/...)")
    entries, problems, current = {}, [], None
    with open(labels_path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("UTD-IMPROV-"):
                match = _HEADER.match(line)
                if match is None:
                    problems.append(f"{labels_path}:{number}: not 'UTD-IMPROV-<id>.avi; E; A:a; V:v; D:d ; N:n;': {line!r}")
                    current = None
                    continue
                current = {**match.groupdict(), "votes": Counter()}
                entries[match["id"]] = current
            elif current is not None:
                rater = _RATER.match(line)
                if rater is None:
                    problems.append(f"{labels_path}:{number}: unreadable rater line {line!r}")
                else:
                    current["votes"][RATER_CLASSES[rater["emo"]]] += 1
    rows, missing, unlabelled = [], [], Counter()
    for utt, entry in entries.items():
        if entry["kind"] not in kinds:
            continue
        if entry["emo"] not in CONSENSUS and entry["emo"] not in ("O", "X"):
            problems.append(f"{labels_path}: {utt} has unknown consensus class {entry['emo']!r}")
            continue
        if utt not in audio:
            missing.append(f"{utt}: listed in {labels_path} but MSP-IMPROV-{utt}.wav is not under {root}")
            continue
        label = CONSENSUS.get(entry["emo"])
        if label is None:
            unlabelled[entry["emo"]] += 1
        session = entry["session"]
        rows.append({
            "id": utt, "audio": audio[utt], "label": label,
            "arousal": _number(entry["a"]), "valence": _number(entry["v"]), "dominance": _number(entry["d"]),
            "speaker": entry["speaker"], "gender": entry["speaker"][0],
            "split": "test" if session in test_sessions else "dev" if session in dev_sessions else "train",
            "label_distribution": vote_distribution(entry["votes"], LABELS),
        })  # fmt: skip
    if missing and on_missing_audio == "error":
        problems += missing
    if problems:
        raise DataValidationError(format_problems(f"MSP-IMPROV at {root}: {len(problems)} problems:", problems), problems)
    if missing:
        logger.warning("MSP-IMPROV: %d rated utterances have no audio and are left out (on_missing_audio=drop)", len(missing))
    if unlabelled:
        logger.info("MSP-IMPROV: %s utterances (O = other, X = no agreement) have no class label", dict(unlabelled))
    if not rows:
        raise CorpusLayoutError(f"MSP-IMPROV: no rated utterance with audio under {root} for kinds {list(kinds)}")
    return order_splits(rows_to_dataset_dict(rows))
