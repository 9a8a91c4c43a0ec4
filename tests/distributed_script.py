"""Run under `accelerate launch`: train a tiny model, record which training rows each process saw,
save the checkpoint, evaluate the test split. Used by tests/test_distributed.py."""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402

from conftest import TINY_LABELS  # noqa: E402
from ser_hf.configuration import SERSpeechConfig  # noqa: E402
from ser_hf.data.collators import SERTargets, SpeechCollator  # noqa: E402
from ser_hf.data.corpora import load_corpus  # noqa: E402
from ser_hf.modeling import SERModelForSpeech, build_feature_extractor  # noqa: E402
from ser_hf.tiny import tiny_speech_backbone  # noqa: E402
from ser_hf.trainer import SERTrainer  # noqa: E402
from ser_hf.training_args import SERTrainingArguments  # noqa: E402


class RecordingCollator(SpeechCollator):
    """Appends the ids of every training batch to a per-process file."""

    record_to: str | None = None

    def train_mode(self, seed=None):
        clone = super().train_mode(seed)
        clone.__class__ = RecordingCollator
        clone.record_to = self.record_to
        return clone

    def __call__(self, rows):
        if self.random_crop and self.record_to:
            with open(self.record_to, "a") as handle:
                handle.writelines(row["id"] + "\n" for row in rows)
        return super().__call__(rows)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--sampler", default="none")
    parser.add_argument("--epochs", type=int, default=2)
    a = parser.parse_args()
    torch.manual_seed(0)
    corpus = load_corpus("manifest", a.manifest)
    config = SERSpeechConfig(backbone_config=tiny_speech_backbone(), labels=TINY_LABELS, task="multitask",
                             head_hidden_size=16, max_audio_seconds=1.0)
    model = SERModelForSpeech(config)
    extractor = build_feature_extractor(config)
    args = SERTrainingArguments(output_dir=a.out, per_device_train_batch_size=2, per_device_eval_batch_size=5,
                                num_train_epochs=a.epochs, sampler=a.sampler, save_strategy="no", report_to=[],
                                disable_tqdm=True, seed=0, dataloader_num_workers=0)
    # window_long_inputs: evaluation scores clips over 1 s whole, as `ser-hf train`/`evaluate` do
    collator = RecordingCollator(extractor, SERTargets.for_config(config), max_seconds=1.0, window_long_inputs=True)
    collator.record_to = os.path.join(a.out, f"seen_rank{args.process_index}.txt")
    os.makedirs(a.out, exist_ok=True)
    trainer = SERTrainer(model=model, args=args, train_dataset=corpus["train"], eval_dataset=corpus["test"],
                         data_collator=collator, processing_class=extractor)
    trainer.train()
    trainer.save_model(os.path.join(a.out, "model"))
    metrics = trainer.evaluate(corpus["test"])
    output = trainer.predict(corpus["test"])
    if trainer.is_world_process_zero():
        with open(os.path.join(a.out, "result.json"), "w") as handle:
            json.dump({"metrics": metrics, "world_size": args.world_size,
                       "num_predictions": int(output.predictions[0].shape[0])}, handle)
    trainer.accelerator.end_training()  # tear the process group down before interpreter exit


if __name__ == "__main__":
    main()
