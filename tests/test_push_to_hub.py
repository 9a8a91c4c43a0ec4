"""What a push would send, intercepted at huggingface_hub's boundary (`HfApi.create_repo` /
`HfApi.create_commit`), so the real transformers/peft/huggingface_hub upload code runs up to the
network: a full model through `SERTrainer.push_to_hub`, a LoRA adapter and a fusion head."""
from __future__ import annotations

import json
import os

import pytest
import torch
from huggingface_hub import CommitInfo, HfApi, ModelCard, RepoUrl
from safetensors.torch import load

from ser_hf.configuration import SERSpeechConfig
from ser_hf.modeling import SERFusionModel, SERModelForSpeech, build_feature_extractor
from ser_hf.modeling.fusion import SERFusionConfig
from ser_hf.tiny import tiny_speech_backbone
from ser_hf.training_args import SERTrainingArguments
from tests.helpers_audio import write_tone

LABELS = ["A", "N", "S"]
SPEECH_CODE = {"configuration.py", "speech.py", "base.py", "heads.py", "pooling.py"}


class HubRecorder:
    """Every repo created and every file a commit would upload: {repo_id: {path_in_repo: bytes}}."""

    def __init__(self, monkeypatch):
        self.repos: list[str] = []
        self.files: dict[str, dict[str, bytes]] = {}
        recorder = self

        def create_repo(api, repo_id, **kwargs):
            recorder.repos.append(repo_id)
            return RepoUrl(f"https://huggingface.co/{repo_id}")

        def create_commit(api, repo_id, operations, *, commit_message="", **kwargs):
            files = recorder.files.setdefault(repo_id, {})
            for operation in operations:
                source = operation.path_or_fileobj
                if isinstance(source, (str, os.PathLike)):
                    with open(source, "rb") as handle:
                        files[operation.path_in_repo] = handle.read()
                elif isinstance(source, bytes):
                    files[operation.path_in_repo] = source
                else:
                    source.seek(0)
                    files[operation.path_in_repo] = source.read()
            return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{'0' * 40}",
                              commit_message=commit_message, commit_description="", oid="0" * 40)

        def validate_yaml(api, content, *args, **kwargs):  # the Hub's YAML check, done by the local parser
            ModelCard(content)
            recorder.validated = True

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_commit", create_commit)
        monkeypatch.setattr(HfApi, "_validate_yaml", validate_yaml)
        # With hf_xet installed, upload_folder streams through its own upload pipeline; without it, every
        # upload ends in one create_commit. Take that path so the commit is the single boundary.
        import huggingface_hub.hf_api

        monkeypatch.setattr(huggingface_hub.hf_api, "is_xet_available", lambda: False)


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_tests")
    return HubRecorder(monkeypatch)


def _no_pickles(files):
    assert not [n for n in files if n.endswith((".bin", ".pt", ".pth", ".pkl")) and n != "training_args.bin"]


def _no_local_paths(files, *roots):
    for name, data in files.items():
        if name.endswith((".json", ".md", ".py")):
            text = data.decode()
            assert not any(str(root) in text for root in roots), name


def _speech_model(seed=0):
    torch.manual_seed(seed)
    return SERModelForSpeech(SERSpeechConfig(backbone_config=tiny_speech_backbone(), labels=LABELS, head_hidden_size=16,
                                             max_audio_seconds=1.0))


def test_trainer_push_sends_weights_config_processor_code_and_card(hub, tmp_path):
    from ser_hf.data.collators import SERTargets, SpeechCollator
    from ser_hf.data.schema import rows_to_dataset
    from ser_hf.trainer import SERTrainer

    rows = [{"id": f"u{i}", "audio": write_tone(tmp_path / f"u{i}.wav", seconds=0.5), "label": code, "split": "train"}
            for i, code in enumerate(["A", "N", "S", "A", "N", "S", "A", "N"])]
    data = rows_to_dataset(rows)
    model = _speech_model()
    extractor = build_feature_extractor(model.config)
    args = SERTrainingArguments(output_dir=str(tmp_path / "run"), hub_model_id="someone/tiny-ser", report_to=[],
                                use_cpu=True, max_steps=1, per_device_train_batch_size=4, save_strategy="no",
                                disable_tqdm=True)
    trainer = SERTrainer(model=model, args=args, train_dataset=data, eval_dataset=data,
                         data_collator=SpeechCollator(extractor, SERTargets.for_config(model.config), max_seconds=1.0),
                         processing_class=extractor)
    trainer.train()
    trainer.evaluate()
    trainer.push_to_hub(license="cc-by-4.0", dataset_tags="someone/my-emotions")

    assert "someone/tiny-ser" in hub.repos
    files = hub.files["someone/tiny-ser"]
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md"} <= set(files)
    assert SPEECH_CODE <= set(files)  # the code the auto_map names
    _no_pickles(files)
    _no_local_paths(files, tmp_path)
    config = json.loads(files["config.json"])
    assert config["auto_map"]["AutoModelForAudioClassification"] == "speech.SERModelForSpeech"
    weights = load(files["model.safetensors"])
    state = trainer.model.state_dict()
    assert set(weights) == set(state) and all(torch.equal(weights[k], state[k]) for k in weights)  # the trained weights
    card = ModelCard(files["README.md"].decode())
    assert card.data.license == "cc-by-4.0" and card.data.library_name == "ser-hf"
    assert card.data.datasets == ["someone/my-emotions"]
    # what ran, not what was configured: 1 step of batch 4 over 8 rows is half an epoch
    assert "| Epochs run | 0.5 |" in card.text and "| Optimizer steps run | 1 |" in card.text
    assert "| Training budget | 1 optimizer steps" in card.text


def test_adapter_push_sends_adapter_weights_config_and_peft_card(hub, tmp_path):
    from ser_hf.finetuning import apply_lora

    model = _speech_model()
    lora = apply_lora(model, base_model_name_or_path="someone/tiny-ser")
    lora.push_to_hub("someone/tiny-ser-lora")
    files = hub.files["someone/tiny-ser-lora"]
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= set(files)
    _no_pickles(files)
    _no_local_paths(files, tmp_path)
    adapter = json.loads(files["adapter_config.json"])
    assert adapter["base_model_name_or_path"] == "someone/tiny-ser" and adapter["task_type"] == "FEATURE_EXTRACTION"
    assert any(".lora_A." in key for key in load(files["adapter_model.safetensors"]))
    card = ModelCard(files["README.md"].decode())
    assert card.data.library_name == "peft" and card.data.base_model == "someone/tiny-ser" and "lora" in card.data.tags


def test_fusion_push_sends_weights_config_and_code(hub, tmp_path):
    torch.manual_seed(0)
    model = SERFusionModel(SERFusionConfig(input_sizes={"audio": 8, "text": 4}, labels=LABELS, head_hidden_size=8))
    model.push_to_hub("someone/tiny-fusion")
    files = hub.files["someone/tiny-fusion"]
    assert {"model.safetensors", "config.json", "fusion.py", "configuration.py", "base.py", "heads.py"} <= set(files)
    _no_pickles(files)
    _no_local_paths(files, tmp_path)
    config = json.loads(files["config.json"])
    assert config["auto_map"]["AutoModel"] == "fusion.SERFusionModel"
    assert config["auto_map"]["AutoConfig"] == "fusion.SERFusionConfig"
    assert set(load(files["model.safetensors"])) == set(model.state_dict())
    card = ModelCard(files["README.md"].decode())  # the ser-hf card, not transformers' generic draft
    assert card.data.library_name == "ser-hf" and "not part of this checkpoint" in card.text
