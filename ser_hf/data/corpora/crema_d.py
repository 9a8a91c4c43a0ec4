"""CREMA-D: 91 actors (48 male, 43 female) reading 12 sentences in six emotions, rated by the crowd.

Layout read (the CREMA-D repository / release)::

    AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav   e.g. 1001_DFA_ANG_XX.wav
    VideoDemographics.csv                              ActorID, Age, Sex, Race, Ethnicity
    processedResults/summaryTable.csv                  FileName, VoiceVote, ... (perceived labels)
    processedResults/tabulatedVotes.csv                A, D, F, H, N, S vote counts per fileName

The intended emotion (ANG, DIS, FEA, HAP, NEU, SAD) and intensity (LO, MD, HI, XX = unspecified)
come from the file name. ``label_source="intended"`` (default) uses it as the label;
``"perceived"`` uses the audio-only crowd vote (``VoiceVote``), where a tie (``A:D``) leaves the
row without a label (counted in the log). The audio-only vote counts of ``tabulatedVotes.csv``
give ``label_distribution`` over the six classes; the vote files are optional for the intended
labels (no distribution then) and required for the perceived ones. Gender comes from the actors'
demographics. Class names are English (angry, disgust, fear, happy, neutral, sad); no dimensional
ratings. Default split: speaker-independent and gender-stratified (20 % of actors test, 10 % dev,
seed 0); the ``crema_d_speaker_folds`` preset gives 5 speaker folds.

Citation: H. Cao et al., "CREMA-D: Crowd-sourced Emotional Multimodal Actors Dataset", IEEE
Transactions on Affective Computing 5(4), 377-390, 2014.
"""
from __future__ import annotations

import csv
import logging
import os
import re

import datasets

from ser_hf.data.corpora.layout import CorpusLayoutError, first_existing, require_dir, require_file
from ser_hf.data.splits import speaker_independent_split
from ser_hf.data.validation import DataValidationError, format_problems
from ser_hf.data.votes import vote_distribution

logger = logging.getLogger(__name__)

EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
VOTE_CODES = {"A": "angry", "D": "disgust", "F": "fear", "H": "happy", "N": "neutral", "S": "sad"}
LABELS = tuple(EMOTIONS.values())
LABEL_NAMES = {name: name for name in LABELS}
ATTRIBUTE_RANGE = None
SENTENCES = {
    "IEO": "It's eleven o'clock.", "TIE": "That is exactly what happened.", "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.", "TAI": "The airplane is almost full.",
    "MTI": "Maybe tomorrow it will be cold.", "IWL": "I would like a new alarm clock.",
    "ITH": "I think I have a doctor's appointment.", "DFA": "Don't forget a jacket.",
    "ITS": "I think I've seen this before.", "TSI": "The surface is slick.", "WSI": "We'll stop in a couple of minutes.",
}  # fmt: skip
LEVELS = ("LO", "MD", "HI", "XX")
_NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})\.wav$")


def _read_csv(path: str) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _results_file(root: str, name: str, required: bool) -> str | None:
    candidates = [os.path.join(root, "processedResults", name), os.path.join(root, "data", "InfoAndStats", "processedResults", name)]
    if not required:
        return next((p for p in candidates if os.path.isfile(p)), None)
    return first_existing(candidates, "CREMA-D", f"the crowd ratings {name}")


def load_crema_d(
    root,
    *,
    label_source: str = "intended",
    test_fraction: float = 0.2,
    dev_fraction: float = 0.1,
    seed: int = 0,
) -> datasets.DatasetDict:
    """Index CREMA-D under ``root``; audio is not opened. A .wav that does not parse, or an actor
    missing from the demographics, is an error (all listed together)."""
    if label_source not in ("intended", "perceived"):
        raise ValueError(f"CREMA-D label_source must be intended or perceived, got {label_source!r}")
    root = os.path.abspath(os.fspath(root))
    require_dir(root, "CREMA-D", "the CREMA-D folder with AudioWAV/ and VideoDemographics.csv")
    wav_dir = require_dir(os.path.join(root, "AudioWAV"), "CREMA-D", "AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav")
    demographics_path = require_file(os.path.join(root, "VideoDemographics.csv"), "CREMA-D", "ActorID, Age, Sex, Race, Ethnicity")
    sex = {row["ActorID"].strip(): row["Sex"].strip() for row in _read_csv(demographics_path)}
    perceived_path = _results_file(root, "summaryTable.csv", label_source == "perceived")
    votes_path = _results_file(root, "tabulatedVotes.csv", label_source == "perceived")
    perceived = {row["FileName"]: row["VoiceVote"] for row in _read_csv(perceived_path)} if perceived_path else {}
    votes = {}
    if votes_path:
        for row in _read_csv(votes_path):
            votes[row["fileName"]] = {VOTE_CODES[k]: float(row[k]) for k in VOTE_CODES}
    names = sorted(n for n in os.listdir(wav_dir) if n.lower().endswith(".wav"))
    if not names:
        raise CorpusLayoutError(f"CREMA-D: no .wav files in {wav_dir}")
    rows, problems, ties, unrated = [], [], 0, 0
    for name in names:
        match = _NAME.match(name)
        if match is None or match["emotion"] not in EMOTIONS or match["sentence"] not in SENTENCES or match["level"] not in LEVELS:
            problems.append(f"{os.path.join(wav_dir, name)}: not a CREMA-D file name (1001_DFA_ANG_XX.wav)")
            continue
        if match["actor"] not in sex:
            problems.append(f"{os.path.join(wav_dir, name)}: actor {match['actor']} is not in {demographics_path}")
            continue
        stem = name[:-4]
        label = EMOTIONS[match["emotion"]]
        if label_source == "perceived":
            vote = perceived.get(stem)
            if vote is None:
                unrated += 1
                label = None
            elif ":" in vote:
                ties += 1
                label = None
            else:
                label = VOTE_CODES.get(vote)
                if label is None:
                    problems.append(f"{perceived_path}: {stem} has unknown VoiceVote {vote!r}")
        gender = sex[match["actor"]][:1].upper()
        rows.append({
            "id": stem, "audio": os.path.join(wav_dir, name), "transcript": SENTENCES[match["sentence"]], "label": label,
            "speaker": match["actor"], "gender": gender if gender in ("M", "F") else None,
            "label_distribution": vote_distribution(votes[stem], LABELS) if stem in votes else None,
        })  # fmt: skip
    if problems:
        raise DataValidationError(format_problems(f"CREMA-D at {root}: {len(problems)} problems:", problems), problems)
    if ties or unrated:
        logger.info("CREMA-D perceived labels: %d ties and %d unrated files have no label", ties, unrated)
    return speaker_independent_split(rows, test_fraction=test_fraction, dev_fraction=dev_fraction, seed=seed)
