"""Berlin EmoDB: acted German speech, labels and speaker encoded in the file name (``03a01Fa.wav``).

Default protocol (speaker-independent, gender-balanced): test speakers 03 (M) and 08 (F), dev
speakers 09 (F) and 10 (M), the other six (3 M, 3 F) train. Labels keep the corpus's German
letter codes; ``LABEL_NAMES`` gives the English names. There are no dimensional ratings.
"""

from __future__ import annotations

import os
import re

import datasets

from ser_hf.data.schema import rows_to_dataset_dict
from ser_hf.data.splits import fixed_speaker_split, order_splits
from ser_hf.data.validation import DataValidationError, format_problems

LABELS = ("W", "L", "N", "F", "A", "T", "E")
LABEL_NAMES = {
    "W": "anger",
    "L": "boredom",
    "N": "neutral",
    "F": "happiness",
    "A": "fear",
    "T": "sadness",
    "E": "disgust",
}
ATTRIBUTE_RANGE = None

SPEAKER_GENDER = {
    "03": "M", "08": "F", "09": "F", "10": "M", "11": "M",
    "12": "M", "13": "F", "14": "F", "15": "M", "16": "F",
}  # fmt: skip
SENTENCES = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
TEST_SPEAKERS = ("03", "08")
DEV_SPEAKERS = ("09", "10")

_NAME = re.compile(r"^(?P<speaker>\d\d)(?P<sentence>[a-z]\d\d)(?P<emotion>[A-Z])(?P<take>[a-z])\.wav$")


def load_emodb(root, *, test_speakers=TEST_SPEAKERS, dev_speakers=DEV_SPEAKERS) -> datasets.DatasetDict:
    """Index ``root/wav/*.wav`` (or ``root/*.wav``) into train/dev/test by speaker; audio is not opened.

    A .wav whose name does not follow the EmoDB pattern or carries an unknown emotion letter is an
    error (listed together), not skipped.
    """
    root = os.path.abspath(os.fspath(root))
    wav_dir = os.path.join(root, "wav") if os.path.isdir(os.path.join(root, "wav")) else root
    if not os.path.isdir(wav_dir):
        raise FileNotFoundError(f"EmoDB folder not found: {root}")
    names = sorted(name for name in os.listdir(wav_dir) if name.lower().endswith(".wav"))
    if not names:
        raise FileNotFoundError(f"no .wav files in {wav_dir} (expected EmoDB files like 03a01Fa.wav)")
    parsed, errors = [], []
    for name in names:
        match = _NAME.match(name)
        if match is None:
            errors.append(f"{name}: not an EmoDB file name (speaker, sentence, emotion, take: 03a01Fa.wav)")
        elif match["emotion"] not in LABELS:
            errors.append(f"{name}: unknown emotion letter {match['emotion']!r} (expected one of {LABELS})")
        else:
            parsed.append((name, match))
    if errors:
        raise DataValidationError(format_problems(f"{wav_dir}: {len(errors)} unexpected files:", errors), errors)
    split_of = fixed_speaker_split(test_speakers, dev_speakers, known={m["speaker"] for _, m in parsed})
    rows = [
        {
            "id": name[:-4],
            "audio": os.path.join(wav_dir, name),
            "transcript": SENTENCES.get(match["sentence"]),
            "label": match["emotion"],
            "speaker": match["speaker"],
            "gender": SPEAKER_GENDER.get(match["speaker"]),
            "split": split_of(match["speaker"]),
        }
        for name, match in parsed
    ]
    return order_splits(rows_to_dataset_dict(rows))
