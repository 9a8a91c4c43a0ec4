"""Model card rendering and `SERTrainer.push_to_hub` with the Hub upload mocked (no network)."""
from __future__ import annotations

import os
import re

import pytest
import yaml
from huggingface_hub import ModelCard

from ser_hf.configuration import SERSpeechConfig, SERTextConfig
from ser_hf.data.corpora import get_corpus_spec
from ser_hf.hub import generate_model_card, normalize_results, results_from_log_history, write_model_card
from ser_hf.tiny import tiny_speech_backbone, tiny_text_backbone
from ser_hf.training_args import SERTrainingArguments
from tests.helpers_audio import write_tone


def _metadata(card: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", card, re.S)
    assert match, "card must start with a YAML block"
    return yaml.safe_load(match.group(1))


def _emodb_config(**kwargs) -> SERSpeechConfig:
    spec = get_corpus_spec("emodb")
    return SERSpeechConfig(
        backbone_config=tiny_speech_backbone(), labels=list(spec.labels), label_names=spec.label_names, **kwargs
    )


def _args(tmp_path, **kwargs) -> SERTrainingArguments:
    return SERTrainingArguments(output_dir=str(tmp_path / "run"), report_to=[], use_cpu=True, **kwargs)


def test_categorical_card_metadata_and_body(tmp_path):
    config = _emodb_config(activation="relu", pooling="mean")
    args = _args(
        tmp_path, loss="focal", focal_gamma=1.5, class_weighting="inverse", sampler="up",
        backbone_learning_rate=1e-5, head_learning_rate=1e-3, num_train_epochs=4,
    )
    results = {"eval_macro_f1": 0.4213, "eval_uar": 0.45, "eval_loss": 1.2, "test_macro_f1": 0.398, "test_runtime": 3.0}
    card = generate_model_card(config, args, results, ["emodb"], model_name="emodb-wavlm", repo_id="someone/emodb-wavlm")
    meta = _metadata(card)
    assert meta["library_name"] == "ser-hf"
    assert meta["pipeline_tag"] == "audio-classification"
    assert "datasets" not in meta and meta["language"] == ["de"]  # "emodb" is a corpus name, not a Hub dataset id
    assert "speech-emotion-recognition" in meta["tags"]
    index = meta["model-index"][0]
    assert index["name"] == "emodb-wavlm"
    scores = {(r["dataset"]["split"], m["name"]): m["value"] for r in index["results"] for m in r["metrics"]}
    assert scores == {("eval", "Macro-F1"): 0.4213, ("eval", "UAR (unweighted average recall)"): 0.45, ("test", "Macro-F1"): 0.398}
    # The Hub's own parser accepts the metadata and sees the same results.
    parsed = ModelCard(card).data
    assert parsed.eval_results[0].metric_value == 0.4213 and parsed.eval_results[0].dataset_name == "EmoDB"
    body = card.split("\n---\n", 1)[1]
    for code, name in get_corpus_spec("emodb").label_names.items():
        assert f"| {code} | {name} |" in body
    assert "focal loss (gamma = 1.5)" in body
    assert "inverse frequency" in body and "class-balanced up-sampling" in body
    assert "relu activation" in body and "masked mean" in body
    assert "backbone 1e-05, pooling 0.001, head 0.001" in body
    assert "| Training budget | 4 epochs |" in body and "Epochs run" not in body  # no run recorded, none claimed
    assert "| Optimizer | adamw_torch" in body and "| Learning-rate schedule | linear, no warm-up |" in body
    assert "## Framework versions" in body and "| transformers |" in body and "| torch |" in body
    assert "pip install ser-hf" in body
    assert "| Macro-F1 | 0.4213 | 0.3980 |" in body
    assert "| UAR (unweighted average recall) | 0.4500 | - |" in body
    assert "acted speech" in body and "German" in body and "Bias" in body
    assert 'pipeline("audio-classification", model="someone/emodb-wavlm")' in body
    assert "import ser_hf" in body


def test_attribute_card_scale_and_ccc():
    config = SERSpeechConfig(backbone_config=tiny_speech_backbone(), task="attributes", attribute_range=(1, 7))
    card = generate_model_card(config, {"attribute_loss": "ccc", "learning_rate": 5e-5},
                               {"test": {"ccc_arousal": 0.61, "ccc_valence": 0.32, "ccc_dominance": 0.5, "ccc_mean": 0.48}},
                               "msp_podcast")
    meta = _metadata(card)
    metrics = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"CCC (arousal)": 0.61, "CCC (valence)": 0.32, "CCC (dominance)": 0.5, "CCC (mean)": 0.48}
    assert "| arousal | 1 to 7 | calm (low) to excited (high) |" in card
    assert "| Id | Code | Emotion |" not in card  # no classes for an attribute model
    assert "1 - CCC" in card and "Categorical loss" not in card
    assert "in-the-wild" in card
    assert 'pipeline("audio-classification"' not in card  # the pipeline needs logits; the card points to predict()


def test_text_card_and_finetuning_policy(tmp_path):
    config = SERTextConfig(backbone_config=tiny_text_backbone(), labels=["pos", "neg"])
    lora = _args(tmp_path, use_lora=True, lora_r=4, lora_alpha=8, lora_target_modules=["query", "value"])
    card = generate_model_card(config, lora)
    assert _metadata(card)["pipeline_tag"] == "text-classification"
    assert "| LoRA adapters | rank 4, alpha 8, dropout 0.05, target modules query, value;" in card
    assert "| Fine-tuning policy | LoRA: encoder weights frozen, low-rank adapters train |" in card
    assert "load_ser_model(path, merge=True)" in card and "pipeline(" not in card  # adapters need ser-hf to load
    assert "No evaluation results were recorded" in card and "model-index" not in card
    bottom = generate_model_card(config, _args(tmp_path, finetuning_policy="freeze_bottom_layers", freeze_bottom_layers=3))
    assert "lowest 3 transformer layers frozen" in bottom and "LoRA" not in bottom
    speech = generate_model_card(_emodb_config(), _args(tmp_path, activation_checkpointing=True))
    assert "| Fine-tuning policy | CNN feature encoder frozen, transformer layers fine-tuned |" in speech
    assert "| Gradient checkpointing | on |" in speech


def test_fusion_card_says_what_predict_needs():
    from ser_hf.modeling import SERFusionConfig

    config = SERFusionConfig(input_sizes={"audio": 64, "text": 32}, labels=["A", "S"], label_names={"A": "angry", "S": "sad"})
    card = generate_model_card(config, repo_id="someone/fusion")
    assert "speech and text emotion recognition model" in card
    assert "audio 64-dim, text 32-dim" in card and "not part of this checkpoint" in card
    assert "--speech_model path/to/fine-tuned-speech-model --text_model path/to/fine-tuned-text-model --transcripts" in card
    assert "pipeline(" not in card  # a fusion head cannot read audio by itself


def test_results_normalisation():
    assert normalize_results({"macro_f1": 0.5, "loss": 2.0}) == {"evaluation": {"macro_f1": 0.5}}
    history = [{"eval_macro_f1": 0.1, "epoch": 1}, {"loss": 0.3}, {"eval_macro_f1": 0.2, "test_uar": 0.3}]
    assert results_from_log_history(history) == {"eval": {"macro_f1": 0.2}, "test": {"uar": 0.3}}


def test_write_model_card_is_atomic_and_replaces(tmp_path):
    (tmp_path / "README.md").write_text("old card")
    path = write_model_card(tmp_path, _emodb_config(), model_name="x")
    assert open(path, encoding="utf-8").read().startswith("---\n")
    assert sorted(os.listdir(tmp_path)) == ["README.md"]


class _FakeHubApi:
    """Stands in for `huggingface_hub.HfApi`: records what would be created and uploaded."""

    def __init__(self):
        self.created, self.uploads = [], []

    def create_repo(self, repo_id, **kwargs):
        self.created.append(repo_id)
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, *, repo_id, folder_path, ignore_patterns=(), **kwargs):
        files = {}
        for name in sorted(os.listdir(folder_path)):
            if name.startswith("_") or name.startswith("checkpoint-"):
                continue
            with open(os.path.join(folder_path, name), "rb") as handle:
                files[name] = handle.read()
        self.uploads.append({"repo_id": repo_id, "files": files, **kwargs})
        return "commit"


@pytest.fixture
def tiny_eval_set(tmp_path):
    from ser_hf.data.schema import rows_to_dataset

    rows = [
        {"id": f"u{i}", "audio": write_tone(tmp_path / f"u{i}.wav", seconds=0.5), "label": code, "split": "dev"}
        for i, code in enumerate(["W", "N", "W", "T"])
    ]
    return rows_to_dataset(rows)


def test_push_to_hub_uploads_weights_processor_and_card(tmp_path, monkeypatch, tiny_eval_set):
    import transformers.trainer

    from ser_hf.data.collators import SERTargets, SpeechCollator
    from ser_hf.modeling import SERModelForSpeech, build_feature_extractor
    from ser_hf.trainer import SERTrainer

    fake = _FakeHubApi()
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: fake)
    model = SERModelForSpeech(_emodb_config(max_audio_seconds=1.0))
    extractor = build_feature_extractor(model.config)
    args = _args(tmp_path, hub_model_id="someone/tiny-ser", loss="focal", sampler="up", per_device_eval_batch_size=4)
    collator = SpeechCollator(extractor, SERTargets.for_config(model.config), max_seconds=1.0)
    trainer = SERTrainer(model=model, args=args, data_collator=collator, processing_class=extractor)
    metrics = trainer.evaluate(tiny_eval_set)
    trainer.push_to_hub(dataset_tags="emodb", license="cc0-1.0")

    assert fake.created == ["someone/tiny-ser"]
    (upload,) = fake.uploads
    assert upload["repo_id"] == "someone/tiny-ser"
    files = upload["files"]
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md"} <= set(files)
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files if name != "training_args.bin")
    card = files["README.md"].decode()
    meta = _metadata(card)
    assert meta["library_name"] == "ser-hf" and meta["license"] == "cc0-1.0" and "datasets" not in meta
    logged = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert logged["Macro-F1"] == round(metrics["eval_macro_f1"], 4)
    assert "focal loss" in card and "anger" in card and "Trainable parameters" in card
    assert 'model="someone/tiny-ser"' in card


@pytest.mark.parametrize("modality", ["speech", "text"])
def test_card_pipeline_snippet_runs_on_a_saved_model(tmp_path, monkeypatch, modality):
    """The card's usage code works as written, with the repo id pointed at a local folder."""
    from transformers import AutoTokenizer

    from ser_hf.modeling import SERModelForSpeech, SERModelForText, build_feature_extractor
    from ser_hf.tiny import tokenizer_path

    folder = tmp_path / "model"
    spec = get_corpus_spec("emodb")
    if modality == "speech":
        model = SERModelForSpeech(_emodb_config(max_audio_seconds=1.0))
        build_feature_extractor(model.config).save_pretrained(folder)
    else:
        model = SERModelForText(
            SERTextConfig(backbone_config=tiny_text_backbone(), labels=list(spec.labels), label_names=spec.label_names)
        )
        AutoTokenizer.from_pretrained(tokenizer_path(str(tmp_path / "tok"))).save_pretrained(folder)
    model.save_pretrained(folder)
    card = generate_model_card(model.config, repo_id="someone/x")
    task = "audio" if modality == "speech" else "text"
    snippet = re.search(rf"```python\n(import ser_hf.*?pipeline\(\"{task}-classification\".*?)```", card, re.S).group(1)
    # The folder sits in huggingface_hub's cache as a download of "someone/x" would: the snippet runs as written.
    import shutil

    import huggingface_hub.constants

    cache = tmp_path / "hub_cache" / "models--someone--x"
    (cache / "refs").mkdir(parents=True)
    (cache / "refs" / "main").write_text("0" * 40)
    shutil.copytree(folder, cache / "snapshots" / ("0" * 40))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub_cache"))
    monkeypatch.chdir(tmp_path)
    write_tone(tmp_path / "speech.wav", seconds=1.0, sampling_rate=22050)  # not 16 kHz: the pipeline resamples
    printed = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: printed.append(a[0]))
    exec(snippet, {})
    (result,) = printed
    assert len(result) == 3 and {r["label"] for r in result} <= set(spec.label_names.values())


def test_dataset_names_in_the_card_are_hub_ids_or_portable(tmp_path):
    """A Hub id goes into the ``datasets`` metadata; a local folder is named by its last component only."""
    local = tmp_path / "my-local-emotions"
    local.mkdir()
    card = generate_model_card(_emodb_config(), datasets=["someone/emotions", str(local), "emodb"])
    assert str(tmp_path) not in card
    parsed = ModelCard(card).data
    assert parsed.datasets == ["someone/emotions"]
    assert "my-local-emotions" in card and "EmoDB" in card
