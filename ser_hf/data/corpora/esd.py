"""ESD (Emotional Speech Dataset): 10 Mandarin and 10 English speakers, 350 parallel utterances in
each of five emotions.

Layout read (as released)::

    <speaker>/<speaker>.txt                                  "<speaker>_<nnnnnn><TAB>text<TAB>emotion"
    <speaker>/<Emotion>/{train,evaluation,test}/<speaker>_<nnnnnn>.wav
    (or <speaker>/<Emotion>/<speaker>_<nnnnnn>.wav without the split folders)

Speakers 0001-0010 speak Mandarin (emotion names in Chinese in their .txt), 0011-0020 English.
Within each emotion's block of 350 utterance numbers, the release's own split is: the first 20
evaluation (dev), the next 30 test, the last 300 train; the split folders, when present, must
agree with it. ``languages`` keeps English, Mandarin or both.

Classes: neutral, angry, happy, sad, surprise; no dimensional ratings. Default split: the
release's (speakers appear in every split: a text-independent, speaker-dependent protocol); use
``cv_folds: speaker`` or a K for speaker-independent results.

Citation: K. Zhou, B. Sisman, R. Liu, H. Li, "Seen and Unseen Emotional Style Transfer for Voice
Conversion with A New Emotional Speech Dataset", ICASSP 2021.
"""
from __future__ import annotations

import os
import re

import datasets

from ser_hf.data.corpora.layout import CorpusLayoutError, require_dir
from ser_hf.data.schema import rows_to_dataset_dict
from ser_hf.data.splits import order_splits
from ser_hf.data.validation import DataValidationError, format_problems

EMOTIONS = ("Neutral", "Angry", "Happy", "Sad", "Surprise")  # in utterance-number order, 350 each
CHINESE = {"中立": "Neutral", "生气": "Angry", "快乐": "Happy", "伤心": "Sad", "惊喜": "Surprise"}
LABELS = ("neutral", "angry", "happy", "sad", "surprise")
LABEL_NAMES = {name: name for name in LABELS}
ATTRIBUTE_RANGE = None
FEMALE = {"0001", "0002", "0003", "0007", "0009", "0012", "0015", "0016", "0017", "0018"}
_FOLDER_SPLIT = {"train": "train", "evaluation": "dev", "test": "test"}
_NAME = re.compile(r"^(?P<speaker>\d{4})_(?P<number>\d{6})\.wav$")


def release_split(number: int) -> str:
    """The ESD split of utterance ``number`` (1-1750): per emotion block of 350, 1-20 evaluation
    (dev), 21-50 test, 51-350 train."""
    offset = (number - 1) % 350 + 1
    return "dev" if offset <= 20 else "test" if offset <= 50 else "train"


def _read_transcripts(path: str) -> dict[str, tuple[str, str]]:
    raw = open(path, "rb").read()
    for encoding in ("utf-8-sig", "utf-16", "gb18030"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise ValueError(f"{path}: not UTF-8, UTF-16 or GB18030 text")
    out = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("\t")]
        if len(parts) >= 3 and parts[0]:
            out[parts[0]] = (parts[1], CHINESE.get(parts[2], parts[2]))
    return out


def load_esd(root, *, languages=("english", "mandarin")) -> datasets.DatasetDict:
    """Index ESD under ``root`` (the folder holding 0001..0020); audio is not opened."""
    unknown = set(languages) - {"english", "mandarin"}
    if unknown:
        raise ValueError(f"ESD languages must be english and/or mandarin, got {sorted(unknown)}")
    root = os.path.abspath(os.fspath(root))
    require_dir(root, "ESD", "the ESD folder with speaker folders 0001..0020")
    speakers = sorted(d for d in os.listdir(root) if re.fullmatch(r"\d{4}", d) and os.path.isdir(os.path.join(root, d)))
    if not speakers:
        raise CorpusLayoutError(f"ESD: no speaker folders 0001..0020 in {root}")
    rows, problems = [], []
    for speaker in speakers:
        language = "mandarin" if int(speaker) <= 10 else "english"
        if language not in languages:
            continue
        text_path = os.path.join(root, speaker, f"{speaker}.txt")
        if not os.path.isfile(text_path):
            raise CorpusLayoutError(f"ESD: missing file {text_path} (expected the speaker's transcripts and emotions)")
        transcripts = _read_transcripts(text_path)
        for emotion in EMOTIONS:
            folder = require_dir(os.path.join(root, speaker, emotion), "ESD", f"{emotion}/ with the speaker's {emotion} utterances")
            for current, _, files in sorted(os.walk(folder)):
                for name in sorted(files):
                    if not name.lower().endswith(".wav"):
                        continue
                    path = os.path.join(current, name)
                    match = _NAME.match(name)
                    if match is None or match["speaker"] != speaker:
                        problems.append(f"{path}: not an ESD file name {speaker}_<nnnnnn>.wav")
                        continue
                    number = int(match["number"])
                    if EMOTIONS[min((number - 1) // 350, 4)] != emotion:
                        problems.append(f"{path}: utterance {number} is outside the {emotion} range")
                        continue
                    split = release_split(number)
                    folder_name = os.path.basename(current)
                    if folder_name in _FOLDER_SPLIT and _FOLDER_SPLIT[folder_name] != split:
                        problems.append(f"{path}: in {folder_name}/ but utterance {number} belongs to ESD's {split} range")
                        continue
                    utt = name[:-4]
                    text, text_emotion = transcripts.get(utt, (None, emotion))
                    if text_emotion != emotion:
                        problems.append(f"{text_path}: {utt} is labelled {text_emotion} but stored under {emotion}/")
                        continue
                    rows.append({
                        "id": utt, "audio": path, "transcript": text, "label": emotion.lower(), "speaker": speaker,
                        "gender": "F" if speaker in FEMALE else "M", "split": split,
                    })  # fmt: skip
    if problems:
        raise DataValidationError(format_problems(f"ESD at {root}: {len(problems)} problems:", problems), problems)
    if not rows:
        raise CorpusLayoutError(f"ESD: no .wav files under {root} for languages {list(languages)}")
    return order_splits(rows_to_dataset_dict(rows))
