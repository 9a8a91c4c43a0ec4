"""Test fixtures for the MSP-Podcast recipe: a tiny corpus in MSP-Podcast's release layout and a
tiny randomly initialised Whisper ASR model, both built offline in seconds.

Corpus layout (as released)::

    root/Labels/labels_consensus.csv   FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set
    root/Audios/MSP-PODCAST_0001_0001.wav ...
    root/Transcripts/MSP-PODCAST_0001_0001.txt ...
    root/Labels/labels_detailed.csv    (``detailed=True``) one row per annotator:
                                       FileName,Worker,EmoClass_Major,EmoClass_Second,EmoAct,EmoVal,EmoDom

Every one of the 8 classes occurs in every labelled split (class weighting needs all of them in
Train), O/X rows occur in Train and Development, and ``test3`` adds an unlabelled Test3 set like
the challenge's evaluation set (empty label cells, speaker and gender "Unknown").
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

CLASSES = ("A", "S", "H", "U", "F", "D", "C", "N")
# (arousal, valence, dominance) on 1-7 per class, roughly where MSP-Podcast puts them.
CLASS_AVD = {
    "A": (5.5, 2.2, 5.3), "S": (2.6, 2.4, 3.0), "H": (5.0, 5.8, 4.8), "U": (5.2, 4.5, 4.2),
    "F": (5.0, 2.5, 3.0), "D": (4.4, 2.3, 4.6), "C": (3.9, 2.8, 4.9), "N": (3.8, 4.1, 4.2),
    "O": (4.2, 4.0, 4.3), "X": (4.0, 3.9, 4.1),
}
WORDS = {
    "A": "this is outrageous and i am furious",
    "S": "i miss them so much it hurts",
    "H": "what a wonderful lovely day",
    "U": "wow i did not expect that at all",
    "F": "i am scared something bad will happen",
    "D": "that smell is gross and disgusting",
    "C": "they think they are better than everyone",
    "N": "the meeting starts at nine on monday",
    "O": "well it is complicated you know",
    "X": "i guess it could be either way",
}
HEADER = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
DETAILED_HEADER = ("FileName", "Worker", "EmoClass_Major", "EmoClass_Second", "EmoAct", "EmoVal", "EmoDom")
LONG_NAMES = {"A": "Angry", "S": "Sad", "H": "Happy", "U": "Surprise", "F": "Fear", "D": "Disgust", "C": "Contempt", "N": "Neutral"}
SAMPLING_RATE = 16000


@dataclass
class MSPFixture:
    root: Path
    rows: list[dict] = field(default_factory=list)  # the CSV rows, as written
    votes: dict[str, list[str]] = field(default_factory=dict)  # FileName -> annotators' EmoClass_Major codes

    def file_names(self, split_set: str) -> list[str]:
        return [row["FileName"] for row in self.rows if row["Split_Set"] == split_set]


def _wave(rng: np.random.Generator, arousal: float, seconds: float) -> np.ndarray:
    """A voiced-like tone whose pitch and loudness rise with arousal, plus a little noise."""
    t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    pitch = 100.0 + 25.0 * arousal
    wave = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in (1, 2, 3))
    wave = (0.05 + 0.04 * arousal) * wave * (0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t) ** 2)
    return (wave + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def build_msp_corpus(
    root: str | os.PathLike,
    *,
    per_class: dict[str, int] | None = None,
    extra: dict[str, int] | None = None,
    test3: int = 0,
    missing_transcripts: int = 0,
    seed: int = 0,
    detailed: bool = False,
) -> MSPFixture:
    """Write a tiny MSP-Podcast-like corpus under ``root``.

    ``per_class``: utterances per class in each labelled Split_Set (default Train 2, Development 1,
    Test1 1); ``extra``: O/X rows per Split_Set (default 2 in Train, 1 in Development);
    ``test3``: unlabelled Test3 utterances; ``missing_transcripts``: how many Development files
    get no transcript file (to exercise ASR filling); ``detailed``: also write
    ``labels_detailed.csv`` with 5 annotators per labelled file (3 vote the consensus class, 1 a
    neighbouring class, 1 "Other"; X files split 2-2-1).
    """
    root = Path(root)
    per_class = per_class or {"Train": 2, "Development": 1, "Test1": 1}
    extra = {"Train": 2, "Development": 1} if extra is None else extra
    rng = np.random.default_rng(seed)
    (root / "Labels").mkdir(parents=True, exist_ok=True)
    (root / "Audios").mkdir(exist_ok=True)
    (root / "Transcripts").mkdir(exist_ok=True)
    speakers = {"Train": (11, 12, 13, 14), "Development": (21, 22), "Test1": (31, 32)}
    plan: list[tuple[str, str | None]] = []
    for split_set, count in per_class.items():
        plan += [(split_set, code) for code in CLASSES for _ in range(count)]
        plan += [(split_set, "OX"[i % 2]) for i in range(extra.get(split_set, 0))]
    plan += [("Test3", None)] * test3

    fixture = MSPFixture(root)
    dev_seen = 0
    for index, (split_set, code) in enumerate(plan):
        file_name = f"MSP-PODCAST_{index // 5 + 1:04d}_{index % 5 + 1:04d}.wav"
        if code is None:  # unlabelled evaluation set: empty label cells, unknown speaker
            row = dict(FileName=file_name, EmoClass="", EmoAct="", EmoVal="", EmoDom="", SpkrID="Unknown", Gender="Unknown")
            arousal, sentence = 4.0, WORDS["N"]
        else:
            avd = np.clip(np.array(CLASS_AVD[code]) + rng.normal(0.0, 0.4, 3), 1.0, 7.0)
            speaker = speakers[split_set][index % len(speakers[split_set])]
            row = dict(
                FileName=file_name,
                EmoClass=code,
                EmoAct=f"{avd[0]:.1f}",
                EmoVal=f"{avd[1]:.1f}",
                EmoDom=f"{avd[2]:.1f}",
                SpkrID=str(speaker),
                Gender="Female" if speaker % 2 else "Male",
            )
            arousal, sentence = avd[0], WORDS[code]
        row["Split_Set"] = split_set
        fixture.rows.append(row)
        sf.write(root / "Audios" / file_name, _wave(rng, arousal, float(rng.uniform(0.6, 1.2))), SAMPLING_RATE, subtype="PCM_16")
        skip_transcript = split_set == "Development" and dev_seen < missing_transcripts
        dev_seen += split_set == "Development"
        if not skip_transcript:
            (root / "Transcripts" / f"{Path(file_name).stem}.txt").write_text(sentence + "\n", encoding="utf-8")
    with open(root / "Labels" / "labels_consensus.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER)
        writer.writeheader()
        writer.writerows(fixture.rows)
    if detailed:
        _write_detailed(root, fixture)
    return fixture


def _write_detailed(root: Path, fixture: MSPFixture) -> None:
    lines = []
    for i, row in enumerate(fixture.rows):
        code = row["EmoClass"]
        if not code:
            continue
        other = CLASSES[(CLASSES.index(code) + 1) % len(CLASSES)] if code in CLASSES else CLASSES[i % len(CLASSES)]
        if code in CLASSES:
            codes = [code, code, code, other, "O"]
        elif code == "X":
            codes = [other, other, "N" if other != "N" else "A", "N" if other != "N" else "A", "O"]
        else:  # O
            codes = ["O", "O", "O", other, other]
        fixture.votes[row["FileName"]] = codes
        for worker, vote in enumerate(codes):
            name = "Other-complicated" if vote == "O" else LONG_NAMES[vote]
            lines.append(
                dict(FileName=row["FileName"], Worker=f"WORKER{worker:05d}", EmoClass_Major=name, EmoClass_Second="",
                     EmoAct=row["EmoAct"], EmoVal=row["EmoVal"], EmoDom=row["EmoDom"])
            )
    with open(root / "Labels" / "labels_detailed.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=DETAILED_HEADER)
        writer.writeheader()
        writer.writerows(lines)


def build_tiny_whisper(folder: str | os.PathLike, *, seed: int = 0, max_length: int = 12) -> str:
    """Save a randomly initialised Whisper (model, feature extractor, tokenizer) to ``folder``; return it.

    The tokenizer is byte-level BPE over the 256 byte symbols (no merges) plus Whisper's special
    tokens, built in code, so nothing is downloaded. Generation is limited to lower-case letters and
    spaces so the "transcripts" are readable words of nonsense. Loading the folder by path through
    ``transformers.pipeline`` is the same code path as a real Whisper checkpoint.
    """
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    folder = Path(folder)
    byte_symbols = bytes_to_unicode()
    vocab = {symbol: i for i, symbol in enumerate(byte_symbols.values())}
    special = "<|endoftext|>"
    tokenizer = WhisperTokenizer(
        vocab=vocab, merges=[], unk_token=special, bos_token=special, eos_token=special, pad_token=special
    )
    extra = ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|translate|>", "<|notimestamps|>"]
    tokenizer.add_special_tokens({"additional_special_tokens": extra})
    eos, start, _, _, _, no_timestamps = tokenizer.convert_tokens_to_ids([special, *extra])
    allowed = {vocab[byte_symbols[b]] for b in b"abcdefghijklmnopqrstuvwxyz "} | {eos}
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=1,
        decoder_attention_heads=1,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_mel_bins=40,
        max_source_positions=1500,
        max_target_positions=64,
        pad_token_id=eos,
        bos_token_id=eos,
        eos_token_id=eos,
        decoder_start_token_id=start,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    generation = model.generation_config
    generation.max_length = max_length  # prompt tokens included
    generation.no_timestamps_token_id = no_timestamps
    generation.suppress_tokens = [i for i in range(len(tokenizer)) if i not in allowed]
    generation.begin_suppress_tokens = [eos]
    model.save_pretrained(folder)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=40), tokenizer=tokenizer).save_pretrained(folder)
    return str(folder)
