"""MELD: utterances of the TV series Friends in dialogue, with text, seven emotions and sentiment.

Layout read (``MELD.Raw/`` as released)::

    train_sent_emo.csv, dev_sent_emo.csv, test_sent_emo.csv
        Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID, Season, Episode, ...
    train_splits/dia<D>_utt<U>.mp4                (also train/train_splits/)
    dev_splits_complete/dia<D>_utt<U>.mp4         (also dev/dev_splits_complete/)
    output_repeated_splits_test/dia<D>_utt<U>.mp4 (also test/output_repeated_splits_test/)

Audio: a ``dia<D>_utt<U>.wav`` beside the .mp4 (or under ``wav_dir/<split>/``) is used as it is;
otherwise the audio track of the .mp4 is extracted once with FFmpeg (16 kHz mono, into
``wav_dir``, default ``<root>/wav``). Without an FFmpeg on PATH the loader stops with an error
saying how many files need it. A row whose media file is missing is an error unless
``on_missing_audio="drop"`` (MELD's own release lacks a few clips).

Classes: the seven emotions (neutral, joy, sadness, anger, surprise, fear, disgust); the
transcript is the utterance text (for the text and fusion models); speakers are the characters.
Default split: the release's train/dev/test (dialogue-disjoint, not speaker-independent).

Citation: S. Poria et al., "MELD: A Multimodal Multi-Party Dataset for Emotion Recognition in
Conversations", ACL 2019.
"""
from __future__ import annotations

import csv
import logging
import os
import shutil
import subprocess

import datasets

from ser_hf.data.corpora.layout import CorpusLayoutError, require_dir, require_file
from ser_hf.data.schema import rows_to_dataset_dict
from ser_hf.data.splits import order_splits
from ser_hf.data.validation import DataValidationError, format_problems

logger = logging.getLogger(__name__)

LABELS = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")
LABEL_NAMES = {name: name for name in LABELS}
ATTRIBUTE_RANGE = None
SPLITS = {
    "train": ("train_sent_emo.csv", ("train_splits", "train/train_splits")),
    "dev": ("dev_sent_emo.csv", ("dev_splits_complete", "dev/dev_splits_complete")),
    "test": ("test_sent_emo.csv", ("output_repeated_splits_test", "test/output_repeated_splits_test")),
}


def extract_audio(video: str, wav: str, ffmpeg: str) -> None:
    """The audio track of ``video`` as 16 kHz mono PCM ``wav`` (written to a temporary name first)."""
    os.makedirs(os.path.dirname(wav), exist_ok=True)
    tmp = wav + ".tmp.wav"
    result = subprocess.run(
        [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", video, "-vn", "-ac", "1", "-ar", "16000", tmp],
        capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise RuntimeError(f"ffmpeg could not read {video}: {result.stderr.strip()[-300:]}")
    os.replace(tmp, wav)


def load_meld(root, *, wav_dir=None, on_missing_audio: str = "error", ffmpeg: str | None = None) -> datasets.DatasetDict:
    """Index MELD under ``root`` (the MELD.Raw folder), extracting audio from the .mp4 files where needed."""
    if on_missing_audio not in ("error", "drop"):
        raise ValueError(f"on_missing_audio must be error or drop, got {on_missing_audio!r}")
    root = os.path.abspath(os.fspath(root))
    require_dir(root, "MELD", "the MELD.Raw folder with *_sent_emo.csv and the media folders")
    wav_dir = os.path.abspath(wav_dir) if wav_dir else os.path.join(root, "wav")
    rows, problems, missing, to_extract = [], [], [], []
    for split, (csv_name, media_dirs) in SPLITS.items():
        csv_path = require_file(os.path.join(root, csv_name), "MELD", "Utterance, Speaker, Emotion, Dialogue_ID, Utterance_ID columns")
        media = next((os.path.join(root, d) for d in media_dirs if os.path.isdir(os.path.join(root, d))), None)
        if media is None:
            raise CorpusLayoutError(f"MELD: missing folder {os.path.join(root, media_dirs[0])} (expected the {split} "
                                    f"clips dia<D>_utt<U>.mp4; also looked for {os.path.join(root, media_dirs[1])})")  # fmt: skip
        with open(csv_path, encoding="utf-8", errors="replace", newline="") as handle:
            reader = csv.DictReader(handle)
            absent = {"Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID"} - set(reader.fieldnames or [])
            if absent:
                raise CorpusLayoutError(f"MELD: {csv_path} lacks columns {sorted(absent)}")
            for number, row in enumerate(reader, 2):
                stem = f"dia{row['Dialogue_ID'].strip()}_utt{row['Utterance_ID'].strip()}"
                emotion = row["Emotion"].strip().lower()
                if emotion not in LABELS:
                    problems.append(f"{csv_path}:{number}: unknown emotion {row['Emotion']!r}")
                    continue
                candidates = [os.path.join(media, stem + ".wav"), os.path.join(wav_dir, split, stem + ".wav")]
                wav = next((p for p in candidates if os.path.isfile(p)), None)
                video = os.path.join(media, stem + ".mp4")
                if wav is None and os.path.isfile(video):
                    wav = candidates[1]
                    to_extract.append((video, wav))
                if wav is None:
                    missing.append(f"{csv_path}:{number}: no {stem}.mp4 (or .wav) in {media}")
                    continue
                rows.append({
                    "id": f"{split}_{stem}", "audio": wav, "transcript": row["Utterance"].strip(), "label": emotion,
                    "speaker": row["Speaker"].strip(), "split": split,
                })  # fmt: skip
    if missing and on_missing_audio == "error":
        problems += missing
    if problems:
        raise DataValidationError(format_problems(f"MELD at {root}: {len(problems)} problems:", problems), problems)
    if missing:
        logger.warning("MELD: %d utterances have no media file and are left out (on_missing_audio=drop)", len(missing))
    if to_extract:
        binary = ffmpeg or shutil.which("ffmpeg")
        if binary is None:
            raise RuntimeError(
                f"MELD: {len(to_extract)} clips are .mp4 only (e.g. {to_extract[0][0]}) and no ffmpeg is on PATH to "
                f"extract their audio; install FFmpeg (apt-get install ffmpeg) or put dia<D>_utt<U>.wav files "
                f"into {wav_dir}/<split>/"
            )
        from tqdm.auto import tqdm

        for video, wav in tqdm(to_extract, desc="MELD: extracting audio (once)", unit="clip"):
            extract_audio(video, wav, binary)
    return order_splits(rows_to_dataset_dict(rows))
