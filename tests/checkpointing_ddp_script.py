"""Run by tests/test_gpu_path.py under `accelerate launch` (2 gloo CPU processes): a tiny backbone with
layerdrop trains with activation checkpointing under DDP, where the stock Trainer setting crashes."""
from __future__ import annotations

import argparse
import json
import os

import torch

from ser_hf.configuration import SERSpeechConfig
from ser_hf.data.collators import SERTargets, SpeechCollator
from ser_hf.data.corpora import load_corpus
from ser_hf.modeling import SERModelForSpeech, build_feature_extractor
from ser_hf.tiny import tiny_speech_backbone
from ser_hf.trainer import SERTrainer
from ser_hf.training_args import SERTrainingArguments


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--kind", default="wavlm")
    parser.add_argument("--stock", action="store_true", help="keep the Trainer's unused-parameter setting (crashes)")
    a = parser.parse_args()
    torch.manual_seed(0)
    corpus = load_corpus("manifest", a.manifest)
    # layerdrop 0.5 with 4 layers: the ranks skip different layers in almost every step
    config = SERSpeechConfig(backbone_config=tiny_speech_backbone(a.kind, num_layers=4, layerdrop=0.5),
                             labels=["a", "b", "c"], task="categorical", head_hidden_size=16, max_audio_seconds=1.0,
                             freeze_feature_encoder=False)
    model = SERModelForSpeech(config)
    extractor = build_feature_extractor(config)
    args = SERTrainingArguments(output_dir=a.out, per_device_train_batch_size=2, max_steps=6, save_strategy="no",
                                report_to=[], disable_tqdm=True, seed=0, dataloader_num_workers=0,
                                activation_checkpointing=True,
                                **({"ddp_find_unused_parameters": False} if a.stock else {}))
    trainer = SERTrainer(model=model, args=args, train_dataset=corpus["train"],
                         data_collator=SpeechCollator(extractor, SERTargets.for_config(config), max_seconds=1.0))
    result = trainer.train()
    if trainer.is_world_process_zero():
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "result.json"), "w") as handle:
            json.dump({"world_size": args.world_size, "steps": result.global_step, "loss": result.training_loss,
                       "find_unused": args.ddp_find_unused_parameters}, handle)


if __name__ == "__main__":
    main()
