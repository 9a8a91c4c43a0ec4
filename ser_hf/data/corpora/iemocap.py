"""IEMOCAP: ten actors in five dyadic sessions, improvised and scripted, as released by USC SAIL.

Layout read (``IEMOCAP_full_release/``)::

    Session1..5/sentences/wav/<dialog>/<utterance>.wav        one file per turn
    Session1..5/dialog/EmoEvaluation/<dialog>.txt             labels (below)
    Session1..5/dialog/transcriptions/<dialog>.txt            "<utterance> [start-end]: text"

An EmoEvaluation block is ``[start - end]<TAB>utterance<TAB>emotion<TAB>[V, A, D]`` followed by
one line per evaluator, ``C-E1:<TAB>Frustration; Anger;<TAB>(comment)`` (categorical) and
``A-E1:<TAB>val 2; act 4; dom 4;<TAB>()`` (dimensional). The consensus code (neu, hap, exc, sad,
ang, fru, fea, sur, dis, oth, xxx = no agreement) gives ``label``; the bracketed V, A, D (1-5,
averaged over evaluators) give valence, arousal and dominance; the categorical evaluator lines give
``label_distribution`` (each evaluator's vote split equally over the categories it lists, then
restricted to the class set and renormalised).

Class sets (``class_set``): ``"4"`` (default, the usual benchmark: neutral, happy = happiness +
excitement, angry, sad), ``"4_no_excited"`` (excitement dropped), ``"6"`` (+ frustrated, excited
kept apart from happy) and ``"all"`` (the nine named categories). Rows outside the set keep their
attributes and transcripts but get ``label`` None (left out of the class task, counted in the log).
With a class set other than the default, set the config's ``labels`` to `class_labels(class_set)`.

Speakers are session + gender of the speaking actor (``Ses01F``), so ``cv_folds: session`` (preset
``iemocap_loso``) is the 5-fold leave-one-session-out protocol. ``dialogs`` filters improvised
(``impro``) or scripted (``script``) dialogs. Default split (no cross-validation): Session 5
test, Session 4 dev, Sessions 1-3 train.

Citation: C. Busso et al., "IEMOCAP: Interactive emotional dyadic motion capture database",
Language Resources and Evaluation 42(4), 335-359, 2008.
"""
from __future__ import annotations

import logging
import os
import re
from collections import Counter

import datasets

from ser_hf.data.corpora.layout import CorpusLayoutError, require_dir
from ser_hf.data.schema import rows_to_dataset_dict
from ser_hf.data.splits import order_splits
from ser_hf.data.validation import DataValidationError, format_problems
from ser_hf.data.votes import vote_distribution

logger = logging.getLogger(__name__)

CODES = {
    "neu": "neutral", "hap": "happy", "exc": "excited", "sad": "sad", "ang": "angry",
    "fru": "frustrated", "fea": "fearful", "sur": "surprised", "dis": "disgusted", "oth": "other",
}  # fmt: skip
EVALUATOR_NAMES = {
    "neutral": "neu", "happiness": "hap", "excited": "exc", "sadness": "sad", "anger": "ang",
    "frustration": "fru", "fear": "fea", "surprise": "sur", "disgust": "dis", "other": "oth",
}  # fmt: skip
CLASS_SETS = {
    "4": {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"},
    "4_no_excited": {"neu": "neutral", "hap": "happy", "ang": "angry", "sad": "sad"},
    "6": {"neu": "neutral", "hap": "happy", "exc": "excited", "ang": "angry", "sad": "sad", "fru": "frustrated"},
    "all": {code: name for code, name in CODES.items() if code != "oth"},
}
LABELS = ("neutral", "happy", "angry", "sad")
LABEL_NAMES = {name: name for name in LABELS}
ATTRIBUTE_RANGE = (1.0, 5.0)
SESSIONS = ("Session1", "Session2", "Session3", "Session4", "Session5")
TEST_SESSIONS = ("Ses05",)
DEV_SESSIONS = ("Ses04",)

_HEADER = re.compile(
    r"^\[(?P<start>[\d.]+) - (?P<end>[\d.]+)\]\t(?P<utt>\S+)\t(?P<emo>\w+)\t"
    r"\[(?P<v>[\d.]+), (?P<a>[\d.]+), (?P<d>[\d.]+)\]\s*$"
)
_CATEGORICAL = re.compile(r"^C-(?P<rater>[^:]+):\t(?P<cats>[^\t]*)\t?.*$")
_TRANSCRIPT = re.compile(r"^(?P<utt>Ses\d\d[FM]_\S+) \[[\d.]+-[\d.]+\]: ?(?P<text>.*)$")
_UTTERANCE = re.compile(r"^(?P<session>Ses\d\d)[FM]_(?P<dialog>.+)_(?P<gender>[FM])\d+$")


def class_labels(class_set: str = "4") -> tuple[str, ...]:
    """The class names of a class set, in label order."""
    if class_set not in CLASS_SETS:
        raise ValueError(f"IEMOCAP class_set must be one of {list(CLASS_SETS)}, got {class_set!r}")
    return tuple(dict.fromkeys(CLASS_SETS[class_set].values()))


def parse_evaluation(path: str) -> tuple[dict[str, dict], list[str]]:
    """One EmoEvaluation file -> ({utterance: {emo, v, a, d, votes}}, problems)."""
    entries: dict[str, dict] = {}
    problems: list[str] = []
    current = None
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            if line.startswith("["):
                match = _HEADER.match(line)
                if match is None:
                    problems.append(f"{path}:{number}: not '[start - end]<TAB>utterance<TAB>emotion<TAB>[V, A, D]': {line!r}")
                    current = None
                    continue
                current = {"emo": match["emo"], "v": float(match["v"]), "a": float(match["a"]),
                           "d": float(match["d"]), "votes": Counter()}  # fmt: skip
                entries[match["utt"]] = current
            elif line.startswith("C-") and current is not None:
                match = _CATEGORICAL.match(line)
                cats = [c.strip().lower() for c in (match["cats"] if match else "").split(";") if c.strip()]
                if match is None or not cats:
                    problems.append(f"{path}:{number}: unreadable evaluator line {line!r}")
                    continue
                for name in cats:  # a name outside EVALUATOR_NAMES is a vote outside every class set
                    current["votes"][EVALUATOR_NAMES.get(name, EVALUATOR_NAMES.get(name.split()[0], "oth"))] += 1.0 / len(cats)
    return entries, problems


def parse_transcripts(path: str) -> dict[str, str]:
    """``<utterance> [start-end]: text`` lines; other lines (unsegmented M:/F: turns) are not utterances."""
    texts = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            match = _TRANSCRIPT.match(line.strip())
            if match:
                texts[match["utt"]] = match["text"].strip()
    return texts


def load_iemocap(
    root,
    *,
    class_set: str = "4",
    dialogs: str = "all",
    sessions=SESSIONS,
    test_sessions=TEST_SESSIONS,
    dev_sessions=DEV_SESSIONS,
    missing_transcripts: str = "keep",
) -> datasets.DatasetDict:
    """Index IEMOCAP under ``root`` (the folder holding Session1..5); audio is not opened.

    ``dialogs``: all, improvised or scripted. An utterance in an EmoEvaluation file without its wav,
    or a malformed label line, is an error (all are listed together). An utterance without a
    transcript line keeps ``transcript`` None (``missing_transcripts="keep"``) or is left out
    (``"drop"``, so speech, text and fusion models see the same utterances); both are counted.
    """
    if missing_transcripts not in ("keep", "drop"):
        raise ValueError(f"IEMOCAP missing_transcripts must be keep or drop, got {missing_transcripts!r}")
    mapping = CLASS_SETS.get(class_set)
    if mapping is None:
        raise ValueError(f"IEMOCAP class_set must be one of {list(CLASS_SETS)}, got {class_set!r}")
    labels = class_labels(class_set)
    kinds = {"all": ("impro", "script"), "improvised": ("impro",), "scripted": ("script",)}
    if dialogs not in kinds:
        raise ValueError(f"IEMOCAP dialogs must be all, improvised or scripted, got {dialogs!r}")
    root = os.path.abspath(os.fspath(root))
    require_dir(root, "IEMOCAP", "the IEMOCAP_full_release folder with Session1..Session5")
    rows, problems, outside, no_transcript = [], [], Counter(), 0
    for session in sessions:
        base = require_dir(os.path.join(root, session), "IEMOCAP", f"{session}/ with sentences/ and dialog/")
        eval_dir = require_dir(os.path.join(base, "dialog", "EmoEvaluation"), "IEMOCAP", "one <dialog>.txt label file per dialog")
        wav_root = require_dir(os.path.join(base, "sentences", "wav"), "IEMOCAP", "sentences/wav/<dialog>/<utterance>.wav")
        text_dir = require_dir(os.path.join(base, "dialog", "transcriptions"), "IEMOCAP", "dialog/transcriptions/<dialog>.txt")
        files = sorted(f for f in os.listdir(eval_dir) if f.endswith(".txt") and f.startswith("Ses"))
        if not files:
            raise CorpusLayoutError(f"IEMOCAP: no Ses*.txt label files in {eval_dir}")
        for name in files:
            dialog = name[:-4]
            if not any(f"_{kind}" in dialog for kind in kinds[dialogs]):
                continue
            entries, bad = parse_evaluation(os.path.join(eval_dir, name))
            problems += bad
            text_path = os.path.join(text_dir, name)
            if not os.path.isfile(text_path):
                problems.append(f"{text_path}: missing transcription file of dialog {dialog}")
                texts = {}
            else:
                texts = parse_transcripts(text_path)
            for utt, entry in entries.items():
                match = _UTTERANCE.match(utt)
                wav = os.path.join(wav_root, dialog, utt + ".wav")
                if match is None:
                    problems.append(f"{os.path.join(eval_dir, name)}: utterance id {utt!r} is not Ses0N[FM]_<dialog>_[FM]NNN")
                    continue
                if not os.path.isfile(wav):
                    problems.append(f"{wav}: missing audio of utterance {utt} (listed in {os.path.join(eval_dir, name)})")
                    continue
                if utt not in texts:
                    no_transcript += 1
                    if missing_transcripts == "drop":
                        continue
                code = entry["emo"]
                if code != "xxx" and code not in CODES:
                    problems.append(f"{os.path.join(eval_dir, name)}: utterance {utt} has unknown emotion code {code!r}")
                    continue
                label = mapping.get(code)
                if label is None:
                    outside[code] += 1
                votes: Counter = Counter()
                for vote_code, weight in entry["votes"].items():
                    if vote_code in mapping:
                        votes[mapping[vote_code]] += weight
                session_id = match["session"]
                rows.append({
                    "id": utt, "audio": wav, "transcript": texts.get(utt), "label": label,
                    "valence": entry["v"], "arousal": entry["a"], "dominance": entry["d"],
                    "speaker": session_id + match["gender"], "gender": match["gender"],
                    "split": "test" if session_id in test_sessions else "dev" if session_id in dev_sessions else "train",
                    "label_distribution": vote_distribution(votes, labels),
                })  # fmt: skip
    if problems:
        raise DataValidationError(format_problems(f"IEMOCAP at {root}: {len(problems)} problems:", problems), problems)
    if not rows:
        raise CorpusLayoutError(f"IEMOCAP: no utterances found under {root} for sessions {list(sessions)} and dialogs={dialogs}")
    if no_transcript:
        logger.warning("IEMOCAP: %d utterances have no transcript line (%s)", no_transcript,
                       "left out" if missing_transcripts == "drop" else "transcript None")
    if outside:
        logger.info("IEMOCAP: %d utterances outside class set %s have no label: %s", sum(outside.values()), class_set, dict(outside))
    return order_splits(rows_to_dataset_dict(rows))
