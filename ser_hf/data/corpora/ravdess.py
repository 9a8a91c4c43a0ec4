"""RAVDESS: acted North-American English, all metadata in the file name.

``Actor_XX/MM-VV-EE-II-SS-RR-AA.wav`` = modality, vocal channel, emotion, intensity, statement,
repetition, actor. Odd actors are male, even female. Defaults: audio-only (modality 03) speech
(vocal channel 01); the sung files lack two emotions and are a different task. Default protocol
(speaker-independent, gender-balanced): test actors 21-24, dev actors 19-20, train actors 01-18.
Labels are the English emotion names.
"""

from __future__ import annotations

import os
import re

import datasets

from ser_hf.data.schema import rows_to_dataset_dict
from ser_hf.data.splits import fixed_speaker_split, order_splits
from ser_hf.data.validation import DataValidationError, format_problems

EMOTION_CODES = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
LABELS = tuple(EMOTION_CODES.values())
LABEL_NAMES = {name: name for name in LABELS}
ATTRIBUTE_RANGE = None

STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
TEST_ACTORS = ("21", "22", "23", "24")
DEV_ACTORS = ("19", "20")

_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.wav$")


def load_ravdess(
    root,
    *,
    test_actors=TEST_ACTORS,
    dev_actors=DEV_ACTORS,
    modalities=("03",),
    vocal_channels=("01",),
) -> datasets.DatasetDict:
    """Index every .wav under ``root`` (any depth), keeping the chosen modalities/vocal channels.

    Files outside the filters are left out by design; a .wav that does not parse, or has an unknown
    emotion/statement code, is an error. Audio is not opened.
    """
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"RAVDESS folder not found: {root}")
    found, errors = [], []
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if not name.lower().endswith(".wav"):
                continue
            match = _NAME.match(name)
            if match is None:
                errors.append(f"{os.path.join(folder, name)}: not a RAVDESS file name (MM-VV-EE-II-SS-RR-AA.wav)")
                continue
            modality, channel, emotion, _, statement, _, actor = match.groups()
            if emotion not in EMOTION_CODES or statement not in STATEMENTS:
                errors.append(f"{os.path.join(folder, name)}: unknown emotion {emotion} or statement {statement}")
            elif modality in modalities and channel in vocal_channels:
                found.append((os.path.join(folder, name), emotion, statement, actor))
    if errors:
        raise DataValidationError(format_problems(f"{root}: {len(errors)} unexpected files:", errors), errors)
    if not found:
        raise FileNotFoundError(
            f"no RAVDESS .wav files under {root} with modality in {modalities} and vocal channel in {vocal_channels}"
        )
    split_of = fixed_speaker_split(test_actors, dev_actors, known={actor for *_, actor in found})
    rows = [
        {
            "id": os.path.basename(path)[:-4],
            "audio": path,
            "transcript": STATEMENTS[statement],
            "label": EMOTION_CODES[emotion],
            "speaker": actor,
            "gender": "M" if int(actor) % 2 else "F",
            "split": split_of(actor),
        }
        for path, emotion, statement, actor in found
    ]
    return order_splits(rows_to_dataset_dict(rows))
