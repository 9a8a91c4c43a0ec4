"""Tiny corpora in the exact layout each owner releases (file names, label files, rater files,
transcripts), a few short tones per class and speaker, written into a tmp folder by the tests."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from helpers_audio import write_tone


# ------------------------------------------------------------------------------------------ IEMOCAP
# (dialog, utterance, consensus code, [V, A, D], evaluator lines, transcript or None)
IEMOCAP_TURNS = {
    1: [
        ("Ses01F_impro01", "Ses01F_impro01_F000", "neu", (2.5, 2.5, 2.5), ["C-E2:\tNeutral;\t()", "C-E3:\tNeutral;\t()", "C-F1:\tNeutral state;\t(curious)"], "Excuse me."),
        ("Ses01F_impro01", "Ses01F_impro01_M000", "fru", (2.0, 3.5, 3.5), ["C-E2:\tFrustration; Anger;\t()", "C-E3:\tAnger;\t()", "C-M1:\tFrustration;\t()"], "Do you have your forms?"),
        ("Ses01F_script01_1", "Ses01F_script01_1_F001", "exc", (4.0, 4.0, 3.0), ["C-E1:\tExcited;\t()", "C-E4:\tHappiness;\t()"], "Oh my God, that is great!"),
        ("Ses01F_script01_1", "Ses01F_script01_1_M002", "ang", (1.5, 4.0, 4.5), ["C-E1:\tAnger;\t()", "C-E3:\tAnger;\t()", "C-E4:\tAnger;\t()"], "Get out."),
    ],
    2: [
        ("Ses02M_impro03", "Ses02M_impro03_F000", "sad", (1.5, 2.0, 2.0), ["C-E1:\tSadness;\t()", "C-E2:\tSadness; Neutral;\t()"], "I miss him."),
        ("Ses02M_impro03", "Ses02M_impro03_M000", "hap", (4.5, 3.5, 3.0), ["C-E1:\tHappiness;\t()", "C-E2:\tExcited;\t()", "C-E3:\tHappiness;\t()"], "We did it."),
        ("Ses02M_script02_2", "Ses02M_script02_2_F000", "xxx", (3.0, 3.0, 3.0), ["C-E1:\tSurprise;\t()", "C-E2:\tFear;\t()"], None),
    ],
}


def build_iemocap(root: str | os.PathLike) -> Path:
    """Sessions 1 and 2 of an IEMOCAP_full_release (the loader is asked for these two)."""
    root = Path(root)
    for session, turns in IEMOCAP_TURNS.items():
        base = root / f"Session{session}"
        by_dialog: dict[str, list] = {}
        for turn in turns:
            by_dialog.setdefault(turn[0], []).append(turn)
        for dialog, items in by_dialog.items():
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            texts = []
            for n, (_, utt, code, (v, a, d), evaluators, text) in enumerate(items):
                lines.append(f"[{1.5 + 3 * n:.4f} - {3.25 + 3 * n:.4f}]\t{utt}\t{code}\t[{v:.4f}, {a:.4f}, {d:.4f}]")
                lines += evaluators
                lines += [f"A-E3:\tval {round(v)}; act {round(a)}; dom  {round(d)};\t()", ""]
                if text is not None:
                    texts.append(f"{utt} [{1.5 + 3 * n:08.4f}-{3.25 + 3 * n:08.4f}]: {text}")
                write_tone(base / "sentences" / "wav" / dialog / f"{utt}.wav", seconds=0.2)
            texts.insert(1, "M: [LAUGHTER]")  # unsegmented lines are not utterances
            (base / "dialog" / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
            (base / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
            (base / "dialog" / "transcriptions").mkdir(parents=True, exist_ok=True)
            (base / "dialog" / "transcriptions" / f"{dialog}.txt").write_text("\n".join(texts) + "\n")
    return root


# ------------------------------------------------------------------------------------------ CREMA-D
CREMA_ACTORS = {"1001": ("51", "Male"), "1002": ("21", "Female"), "1003": ("21", "Female"), "1005": ("29", "Male")}
CREMA_CLIPS = ["IEO_ANG_HI", "DFA_HAP_XX", "TIE_NEU_XX", "IWW_SAD_XX", "ITS_FEA_XX", "WSI_DIS_XX"]


def crema_votes(actor: str, clip: str) -> dict[str, int]:
    """Deterministic per-file voice votes (A D F H N S); the intended class usually wins, one tie."""
    emotion = clip.split("_")[1]
    votes = dict.fromkeys("ADFHNS", 0)
    votes[{"ANG": "A", "DIS": "D", "FEA": "F", "HAP": "H", "NEU": "N", "SAD": "S"}[emotion]] = 5
    votes["N"] += 2
    if (actor, clip) == ("1002", "IEO_ANG_HI"):
        votes["D"] = 5  # A:D tie in the perceived vote
    return votes


def build_crema_d(root: str | os.PathLike) -> Path:
    root = Path(root)
    summary, tabulated = [], []
    for actor in CREMA_ACTORS:
        for clip in CREMA_CLIPS:
            name = f"{actor}_{clip}"
            write_tone(root / "AudioWAV" / f"{name}.wav", seconds=0.2)
            votes = crema_votes(actor, clip)
            top = max(votes.values())
            winners = ":".join(k for k, v in votes.items() if v == top)
            summary.append([str(len(summary) + 1), name, winners, "60", "N", "70", winners, "65"])
            tabulated.append([str(100001 + len(tabulated)), *(votes[k] for k in "ADFHNS"), name, sum(votes.values()),
                              top / sum(votes.values()), winners])  # fmt: skip
    with open(root / "VideoDemographics.csv", "w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC)
        writer.writerow(["ActorID", "Age", "Sex", "Race", "Ethnicity"])
        for actor, (age, sex) in CREMA_ACTORS.items():
            writer.writerow([int(actor), int(age), sex, "Caucasian", "Not Hispanic"])
    (root / "processedResults").mkdir(parents=True, exist_ok=True)
    with open(root / "processedResults" / "summaryTable.csv", "w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        writer.writerow(["", "FileName", "VoiceVote", "VoiceLevel", "FaceVote", "FaceLevel", "MultiModalVote", "MultiModalLevel"])
        writer.writerows(summary)
    with open(root / "processedResults" / "tabulatedVotes.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", "A", "D", "F", "H", "N", "S", "fileName", "numResponses", "agreement", "emoVote"])
        writer.writerows(tabulated)
    return root


# ------------------------------------------------------------------------------------------ MSP-IMPROV
# (file stem without the UTD-IMPROV/MSP-IMPROV prefix, consensus, A, V, D, rater lines)
MSP_IMPROV_ITEMS = [
    ("S01A-F01-P-FM01", "A", 4.2, 1.8, 4.0, ["rater1; Angry; ; A:4.0; V:2.0; D:4.0; N:4.0;", "rater2; Angry; ; A:4.5; V:1.5; D:4.0; N:4.0;", "rater3; Other; annoyed; A:4.0; V:2.0; D:4.0; N:3.0;"]),
    ("S01A-M01-R-MF02", "N", 2.8, 3.0, 3.0, ["rater1; Neutral; ; A:3.0; V:3.0; D:3.0; N:3.0;", "rater4; Sad; ; A:2.5; V:3.0; D:3.0; N:3.0;"]),
    ("S01H-F01-T-FM03", "H", 3.6, 4.4, 3.2, ["rater2; Happy; ; A:3.5; V:4.5; D:3.0; N:4.0;"]),
    ("S02S-M02-S-MF01", "S", 2.0, 1.6, 2.2, ["rater1; Sad; ; A:2.0; V:1.5; D:2.0; N:4.0;", "rater5; Sad; ; A:2.0; V:1.7; D:2.4; N:4.0;"]),
    ("S02N-F02-P-FM01", "X", 3.0, 3.0, 3.0, ["rater1; Happy; ; A:3.0; V:3.0; D:3.0; N:2.0;", "rater2; Sad; ; A:3.0; V:3.0; D:3.0; N:2.0;"]),
]


def build_msp_improv(root: str | os.PathLike) -> Path:
    root = Path(root)
    lines = []
    for stem, emo, a, v, d, raters in MSP_IMPROV_ITEMS:
        lines.append(f"UTD-IMPROV-{stem}.avi; {emo}; A:{a:.6f}; V:{v:.6f}; D:{d:.6f} ; N:4.000000;")
        lines += raters
        lines.append("")
        session, kind = stem.split("-")[0], stem.split("-")[2]
        folder = root / f"session{int(session[1:3])}" / session / kind
        write_tone(folder / f"MSP-IMPROV-{stem}.wav", seconds=0.2)
    (root / "Evaluation.txt").write_text("\n".join(lines) + "\n")
    return root


# ------------------------------------------------------------------------------------------ MELD
MELD_ROWS = {
    "train": [(0, 0, "Chandler", "neutral", "also I was the point person on my company's transition"),
              (0, 1, "The Interviewer", "neutral", "You must've had your hands full."),
              (1, 0, "Monica", "joy", "That's great!"),
              (1, 1, "Ross", "anger", "No, no, no!")],
    "dev": [(0, 0, "Phoebe", "sadness", "Oh, it's so sad."), (0, 1, "Joey", "surprise", "Really?!")],
    "test": [(0, 0, "Rachel", "fear", "What was that?"), (0, 1, "Monica", "disgust", "Ew.")],
}
MELD_MEDIA = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}


def build_meld(root: str | os.PathLike, *, wav: bool = True) -> Path:
    """MELD.Raw: the three *_sent_emo.csv files and, per split, its media folder (wav stand-ins for
    the mp4 files when ``wav``; with ``wav=False`` the folders hold .mp4 names only)."""
    root = Path(root)
    header = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID", "Season",
              "Episode", "StartTime", "EndTime"]  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    for split, rows in MELD_ROWS.items():
        with open(root / f"{split}_sent_emo.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for n, (dia, utt, speaker, emotion, text) in enumerate(rows, 1):
                writer.writerow([n, text, speaker, emotion, "neutral", dia, utt, 8, 21, "00:16:16,059", "00:16:21,731"])
                media = root / MELD_MEDIA[split] / f"dia{dia}_utt{utt}"
                if wav:
                    write_tone(media.with_suffix(".wav"), seconds=0.2)
                else:
                    media.parent.mkdir(parents=True, exist_ok=True)
                    media.with_suffix(".mp4").write_bytes(b"not really a video")
    return root


# ------------------------------------------------------------------------------------------ ESD
ESD_SPEAKERS = ("0001", "0011")  # one Mandarin, one English speaker
ESD_EMOTIONS = ("Neutral", "Angry", "Happy", "Sad", "Surprise")
ESD_CHINESE = {"Neutral": "中立", "Angry": "生气", "Happy": "快乐", "Sad": "伤心", "Surprise": "惊喜"}
ESD_OFFSETS = (1, 21, 51)  # first evaluation, test and train utterance within an emotion's block of 350


def build_esd(root: str | os.PathLike, *, split_folders: bool = True) -> Path:
    """``<speaker>/<Emotion>/{evaluation,test,train}/<speaker>_<nnnnnn>.wav`` plus ``<speaker>/<speaker>.txt``."""
    root = Path(root)
    for speaker in ESD_SPEAKERS:
        lines = []
        for k, emotion in enumerate(ESD_EMOTIONS):
            for offset, split in zip(ESD_OFFSETS, ("evaluation", "test", "train")):
                number = 350 * k + offset
                utt = f"{speaker}_{number:06d}"
                folder = root / speaker / emotion / split if split_folders else root / speaker / emotion
                write_tone(folder / f"{utt}.wav", seconds=0.2)
                label = ESD_CHINESE[emotion] if speaker <= "0010" else emotion
                lines.append(f"{utt}\t{'打远一看' if speaker <= '0010' else 'Author of the danger trail'} {number}\t{label}")
        (root / speaker / f"{speaker}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


# ------------------------------------------------------------------------------------------ TESS
TESS_FOLDERS = {"OAF": ["OAF_angry", "OAF_Fear", "OAF_neutral", "OAF_Pleasant_surprise"],
                "YAF": ["YAF_angry", "YAF_fear", "YAF_neutral", "YAF_pleasant_surprised"]}  # fmt: skip
TESS_WORDS = ("back", "bath", "bean", "chair", "dog")


def build_tess(root: str | os.PathLike) -> Path:
    """``<SPK>_<emotion folder>/<SPK>_<word>_<emotion>.wav`` (folder capitalisation as released)."""
    root = Path(root) / "TESS Toronto emotional speech set data"
    for speaker, folders in TESS_FOLDERS.items():
        for folder in folders:
            emotion = {"angry": "angry", "fear": "fear", "neutral": "neutral"}.get(folder.split("_", 1)[1].lower(), "ps")
            for word in TESS_WORDS:
                write_tone(root / folder / f"{speaker}_{word}_{emotion}.wav", seconds=0.2)
    return root.parent
