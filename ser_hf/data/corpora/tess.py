"""TESS (Toronto Emotional Speech Set): two actresses (aged 26 and 64) saying "Say the word ___"
with 200 target words in seven emotions.

Layout read (as released)::

    TESS Toronto emotional speech set data/<SPK>_<emotion>/<SPK>_<word>_<emotion>.wav
        e.g. OAF_Fear/OAF_back_fear.wav, YAF_pleasant_surprised/YAF_bath_ps.wav

The speaker (OAF older, YAF younger) and emotion (angry, disgust, fear, happy, neutral, ps =
pleasant surprise, sad) are read from the file name (case-insensitive; folder names vary in case
and spelling). The transcript is "Say the word <word>". Classes: angry, disgust, fear, happy,
neutral, surprise, sad; no dimensional ratings.

Default split: word-disjoint (lexically independent) — a fixed 20 % of the target words (every
fifth word in sorted order) test, the next 10 % dev, the rest train, for both speakers. With only
two speakers a speaker-independent split trains on one voice; ``cv_folds: speaker`` does that.

Citation: K. Dupuis, M. K. Pichora-Fuller, "Toronto emotional speech set (TESS)", University of
Toronto, Psychology Department, 2010. https://doi.org/10.5683/SP2/E8H2MF
"""
from __future__ import annotations

import os
import re

import datasets

from ser_hf.data.corpora.layout import CorpusLayoutError, require_dir
from ser_hf.data.schema import rows_to_dataset_dict
from ser_hf.data.splits import order_splits
from ser_hf.data.validation import DataValidationError, format_problems

EMOTIONS = {"angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy", "neutral": "neutral",
            "ps": "surprise", "sad": "sad"}  # fmt: skip
LABELS = ("angry", "disgust", "fear", "happy", "neutral", "surprise", "sad")
LABEL_NAMES = {name: name for name in LABELS}
ATTRIBUTE_RANGE = None
SPEAKERS = {"OAF": "older adult female (64)", "YAF": "younger adult female (26)"}
_NAME = re.compile(r"^(?P<speaker>OAF|YAF)_(?P<word>[a-z]+)_(?P<emotion>[a-z]+)\.wav$", re.IGNORECASE)


def word_split(words: list[str]) -> dict[str, str]:
    """Sorted words: every 5th (from the first) test, every 10th (from the second) dev, the rest train."""
    out = {}
    for i, word in enumerate(sorted(words)):
        out[word] = "test" if i % 5 == 0 else "dev" if i % 10 == 1 else "train"
    return out


def load_tess(root) -> datasets.DatasetDict:
    """Index every .wav under ``root`` (any depth); a .wav whose name does not parse is an error."""
    root = os.path.abspath(os.fspath(root))
    require_dir(root, "TESS", "the TESS folder with OAF_*/ and YAF_*/ emotion folders")
    found, problems = [], []
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if not name.lower().endswith(".wav"):
                continue
            match = _NAME.match(name)
            emotion = EMOTIONS.get(match["emotion"].lower()) if match else None
            if emotion is None:
                problems.append(f"{os.path.join(folder, name)}: not a TESS file name <OAF|YAF>_<word>_<emotion>.wav")
                continue
            found.append((os.path.join(folder, name), match["speaker"].upper(), match["word"].lower(), emotion))
    if problems:
        raise DataValidationError(format_problems(f"TESS at {root}: {len(problems)} problems:", problems), problems)
    if not found:
        raise CorpusLayoutError(f"TESS: no .wav files under {root} (expected OAF_angry/OAF_back_angry.wav ...)")
    split_of = word_split(sorted({word for _, _, word, _ in found}))
    rows = [
        {"id": os.path.basename(path)[:-4], "audio": path, "transcript": f"Say the word {word}", "label": emotion,
         "speaker": speaker, "gender": "F", "split": split_of[word]}
        for path, speaker, word, emotion in found
    ]  # fmt: skip
    return order_splits(rows_to_dataset_dict(rows))
