"""Fusion: the head on cached features (`SERFusionModel`, `ser-hf fuse`) and the joint model."""
from __future__ import annotations

import os

import datasets
import numpy as np
import pytest
import torch
import yaml
from transformers import AutoModel, AutoTokenizer

from ser_hf.configuration import SERSpeechConfig, SERTextConfig
from ser_hf.data.collators import SERTargets, SpeechCollator, TextCollator
from ser_hf.features import (
    METADATA_FILE,
    FeatureCollator,
    _save_dataset_atomically,
    feature_schema,
    join_feature_datasets,
)
from ser_hf.modeling import SERModelForSpeech, SERModelForText, build_feature_extractor
from ser_hf.modeling.fusion import JointCollator, SERFusionConfig, SERFusionModel, SERJointModel
from ser_hf.tiny import tiny_speech_backbone, tiny_text_backbone, tokenizer_path
from ser_hf.training_args import SERTrainingArguments

LABELS = ["a", "b", "c"]
SPLITS = ("train", "dev", "test")


# ------------------------------------------------------------------------------- fixtures
def _feature_rows(n_per_split: int = 36, seed: int = 0) -> dict[str, list]:
    """Rows of two modalities: the audio block carries the class, the text block carries valence."""
    rng = np.random.default_rng(seed)
    rows = {k: [] for k in ("id", "label", "arousal", "valence", "dominance", "speaker", "gender", "split", "audio", "text")}
    for split in SPLITS:
        for k in range(n_per_split):
            label = LABELS[k % 3]
            arousal = 2.0 + 2.0 * LABELS.index(label) + rng.normal(0, 0.2)
            valence = float(rng.uniform(1.5, 6.5))
            rows["id"].append(f"{split}{k:03d}")
            rows["label"].append(label)
            rows["arousal"].append(arousal)
            rows["valence"].append(valence)
            rows["dominance"].append(4.0)
            rows["speaker"].append(f"{split}_s{k % 2}")
            rows["gender"].append("Female" if k % 2 else "Male")
            rows["split"].append(split)
            audio = rng.normal(0, 0.5, 4)
            audio[LABELS.index(label)] += 1.0
            audio[3] = arousal - 4.0
            rows["audio"].append(audio.astype(np.float32))
            rows["text"].append(np.array([valence - 4.0, *rng.normal(0, 0.3, 2)], dtype=np.float32))
    return rows


def _block_dataset(rows: dict, block: str, order=None) -> datasets.Dataset:
    order = list(range(len(rows["id"]))) if order is None else order
    columns = {k: [rows[k][i] for i in order] for k in ("id", "label", "arousal", "valence", "dominance", "speaker", "gender", "split")}
    columns["features"] = [rows[block][i] for i in order]
    return datasets.Dataset.from_dict({k: columns[k] for k in feature_schema()}, features=feature_schema())


def _save_block(ds: datasets.Dataset, path: str) -> str:
    meta = {"feature_size": len(ds[0]["features"]), "labels": LABELS, "label_names": None, "attribute_range": [1.0, 7.0]}
    _save_dataset_atomically(ds, path, meta)
    return path


@pytest.fixture(scope="module")
def feature_dirs(tmp_path_factory):
    rows = _feature_rows()
    root = tmp_path_factory.mktemp("features")
    shuffled = list(np.random.default_rng(1).permutation(len(rows["id"])))  # text rows in another order
    return (
        _save_block(_block_dataset(rows, "audio"), str(root / "audio")),
        _save_block(_block_dataset(rows, "text", shuffled), str(root / "text")),
    )


def _training_args(tmp_path, **overrides) -> SERTrainingArguments:
    values = dict(
        output_dir=str(tmp_path / "out"), num_train_epochs=30, per_device_train_batch_size=16, learning_rate=1e-2,
        report_to=[], disable_tqdm=True, save_strategy="no", eval_strategy="no", logging_strategy="no", seed=0,
        use_cpu=True,
    )
    values.update(overrides)
    return SERTrainingArguments(**values)


# ------------------------------------------------------------------------------- the model
def test_blocks_are_stored_audio_first_whatever_the_input_order():
    config = SERFusionConfig(input_sizes={"text": 3, "extra": 1, "audio": 2}, task="attributes")
    assert config.input_sizes == [["audio", 2], ["text", 3], ["extra", 1]]
    assert SERFusionConfig.from_dict(config.to_dict()).blocks == {"audio": 2, "text": 3, "extra": 1}
    with pytest.raises(ValueError, match="positive int"):
        SERFusionConfig(input_sizes={"audio": 0}, task="attributes")
    with pytest.raises(ValueError, match="unique"):
        SERFusionConfig(input_sizes=[["audio", 2], ["audio", 3]], task="attributes")


def test_concatenated_and_per_block_inputs_agree_and_bad_widths_are_named():
    torch.manual_seed(0)
    model = SERFusionModel(SERFusionConfig(input_sizes={"audio": 2, "text": 3}, task="multitask", labels=LABELS)).eval()
    audio, text = torch.randn(4, 2), torch.randn(4, 3)
    joined = model(features=torch.cat([audio, text], dim=-1))
    for features in ({"text": text, "audio": audio}, [audio, text]):
        out = model(features=features)
        torch.testing.assert_close(out.logits, joined.logits)
        torch.testing.assert_close(out.attributes, joined.attributes)
    assert joined.logits.shape == (4, 3) and joined.attributes.shape == (4, 3)
    torch.testing.assert_close(joined.attributes, 1.0 + 6.0 * joined.attributes_normalized)  # corpus scale 1-7
    with pytest.raises(ValueError, match=r"B x 5 .*audio"):
        model(features=torch.randn(4, 6))
    with pytest.raises(ValueError, match="'text' must be B x 3"):
        model(features={"audio": audio, "text": torch.randn(4, 4)})
    # Per-block LayerNorm: scaling one block does not change the output.
    torch.testing.assert_close(model(features=[audio, 100 * text]).logits, joined.logits, atol=1e-4, rtol=1e-4)


def test_head_uses_the_configured_activation():
    model = SERFusionModel(SERFusionConfig(input_sizes={"audio": 2, "text": 3}, task="categorical", labels=LABELS))
    assert any(isinstance(m, torch.nn.Mish) for m in model.classifier.modules())
    relu = SERFusionModel(SERFusionConfig(input_sizes={"audio": 2}, task="categorical", labels=LABELS, activation="relu"))
    assert any(isinstance(m, torch.nn.ReLU) for m in relu.classifier.modules())


def test_feature_collator_builds_tensors_and_names_bad_rows():
    collator = FeatureCollator(SERTargets(labels=LABELS, attributes=("arousal",)))
    batch = collator([{"id": "x", "features": [1.0, 2.0], "label": "b", "arousal": 3.0},
                      {"id": "y", "features": [3.0, 4.0], "label": None, "arousal": None}])
    assert batch["features"].dtype == torch.float32 and batch["features"].shape == (2, 2)
    assert batch["labels"].tolist() == [1, -100]
    assert batch["attribute_labels"][0].tolist() == [3.0] and torch.isnan(batch["attribute_labels"][1]).all()
    assert collator.train_mode() is collator
    with pytest.raises(ValueError, match="row 'y'"):
        collator([{"id": "x", "features": [1.0, 2.0]}, {"id": "y", "features": [1.0]}])


# ------------------------------------------------------------------------------- joining
def test_join_is_by_id_audio_first_and_names_missing_ids():
    rows = _feature_rows(n_per_split=4)
    audio = _block_dataset(rows, "audio")
    text = _block_dataset(rows, "text", order=list(reversed(range(len(rows["id"])))))
    joined = join_feature_datasets({"text": text, "audio": audio})  # order of the dict does not matter
    assert joined["id"] == rows["id"]
    np.testing.assert_allclose(np.asarray(joined["features"]), np.concatenate([rows["audio"], rows["text"]], axis=1))
    assert joined["label"] == rows["label"]

    with pytest.raises(ValueError, match=r"1 ids only in 'audio' \(first: \['test003'\]\)"):
        join_feature_datasets({"audio": audio, "text": text.filter(lambda r: r["id"] != "test003")})
    relabelled = text.map(lambda r: {"label": "c" if r["id"] == "dev001" else r["label"]})
    with pytest.raises(ValueError, match=r"disagree on 'label' for ids \['dev001'\]"):
        join_feature_datasets({"audio": audio, "text": relabelled})


# ------------------------------------------------------------------------------- training
def test_fusion_trains_with_ser_trainer_and_round_trips(tmp_path):
    from ser_hf.trainer import SERTrainer

    rows = _feature_rows()
    joined = join_feature_datasets({"audio": _block_dataset(rows, "audio"), "text": _block_dataset(rows, "text")})
    train = joined.filter(lambda r: r["split"] == "train")
    test = joined.filter(lambda r: r["split"] == "test")
    config = SERFusionConfig(input_sizes={"audio": 4, "text": 3}, task="multitask", labels=LABELS, head_hidden_size=32)
    model = SERFusionModel(config)
    trainer = SERTrainer(model=model, args=_training_args(tmp_path, loss="focal"), train_dataset=train,
                         data_collator=FeatureCollator(SERTargets.for_config(config)))
    assert trainer.categorical_loss.__class__.__name__ == "FocalLoss"
    before = trainer.evaluate(test)
    trainer.train()
    after = trainer.evaluate(test)
    assert after["eval_loss"] < before["eval_loss"] - 0.3 and after["eval_macro_f1"] > 0.85
    assert before["eval_ccc_valence"] < 0.5 and before["eval_ccc_arousal"] < 0.5
    assert after["eval_ccc_valence"] > 0.65 and after["eval_ccc_arousal"] > 0.65

    model.save_pretrained(tmp_path / "saved")
    loaded = AutoModel.from_pretrained(tmp_path / "saved")
    assert isinstance(loaded, SERFusionModel) and loaded.config.blocks == {"audio": 4, "text": 3}
    features = torch.tensor(np.asarray(test["features"][:5], dtype=np.float32))
    torch.testing.assert_close(loaded.eval()(features=features).attributes, model.eval()(features=features).attributes)


def test_fuse_command_from_yaml(tmp_path, feature_dirs):
    from ser_hf.commands.fuse import main

    audio_dir, text_dir = feature_dirs
    config = {
        "audio_features": audio_dir, "text_features": text_dir, "task": "multitask", "head_hidden_size": 32,
        "output_dir": str(tmp_path / "fusion"), "num_train_epochs": 30, "learning_rate": 1e-2,
        "per_device_train_batch_size": 16, "eval_strategy": "no", "save_strategy": "no", "report_to": [],
        "disable_tqdm": True, "use_cpu": True, "logging_strategy": "no",
    }
    (tmp_path / "fusion.yaml").write_text(yaml.safe_dump(config))
    assert main(["--config", str(tmp_path / "fusion.yaml"), "--activation", "mish"]) == 0
    metrics = yaml.safe_load((tmp_path / "fusion" / "test_metrics.json").read_text())
    assert metrics["macro_f1"] > 0.85 and metrics["ccc_valence"] > 0.65 and metrics["ccc_arousal"] > 0.65
    saved = AutoModel.from_pretrained(tmp_path / "fusion")
    assert isinstance(saved, SERFusionModel) and saved.config.labels == LABELS and saved.config.activation == "mish"


def test_fuse_names_ids_missing_from_one_modality(tmp_path, feature_dirs):
    from ser_hf.commands.fuse import FuseArguments, train_fusion

    audio_dir, text_dir = feature_dirs
    text = datasets.load_from_disk(text_dir).filter(lambda r: r["id"] not in ("train005", "test007"))
    short = _save_block(text, str(tmp_path / "text_short"))
    assert os.path.isfile(os.path.join(short, METADATA_FILE))
    with pytest.raises(ValueError, match=r"2 ids only in 'audio' \(first: \['train005', 'test007'\]\)"):
        train_fusion(FuseArguments(audio_features=audio_dir, text_features=short), _training_args(tmp_path))


def test_fuse_cli_reports_a_bad_join_or_folder_without_traceback(tmp_path, feature_dirs, capsys):
    """A user-fixable feature problem: exit 2, one message naming ids or the folder, no traceback."""
    from ser_hf.cli import main

    audio_dir, text_dir = feature_dirs
    text = datasets.load_from_disk(text_dir).filter(lambda r: r["id"] != "dev002")
    short = _save_block(text, str(tmp_path / "text_short"))
    common = ["--output_dir", str(tmp_path / "out"), "--use_cpu", "true", "--report_to", "none"]
    assert main(["fuse", "--audio_features", audio_dir, "--text_features", short, *common]) == 2
    err = capsys.readouterr().err
    assert "ser-hf fuse: error: feature blocks 'audio' and 'text' cover different utterances" in err
    assert "['dev002']" in err and "Traceback" not in err
    assert main(["fuse", "--audio_features", audio_dir, "--text_features", str(tmp_path), *common]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path} is not a ser-hf feature dataset" in err and "Traceback" not in err


# ------------------------------------------------------------------------------- joint model
def test_joint_model_trains_a_step_and_round_trips(tmp_path, tiny_corpus):
    from ser_hf.trainer import SERTrainer

    torch.manual_seed(0)
    speech = SERModelForSpeech(SERSpeechConfig(backbone_config=tiny_speech_backbone("wavlm"), task="attributes"))
    text = SERModelForText(SERTextConfig(backbone_config=tiny_text_backbone(), task="attributes"))
    model = SERJointModel.from_parts(speech, text, task="multitask", labels=["a", "b", "c"], head_hidden_size=16)
    torch.testing.assert_close(model.text.backbone.embeddings.word_embeddings.weight, text.backbone.embeddings.word_embeddings.weight)
    assert model.speech.classifier is None and model.speech.regressor is None

    targets = SERTargets.for_config(model.config)
    collator = JointCollator(
        SpeechCollator(build_feature_extractor(model.speech.config), targets, max_seconds=1.0),
        TextCollator(AutoTokenizer.from_pretrained(tokenizer_path()), SERTargets()),
    )
    train = tiny_corpus["train"].select(range(4))
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    args = _training_args(tmp_path, max_steps=1, per_device_train_batch_size=4, learning_rate=1e-3)
    SERTrainer(model=model, args=args, train_dataset=train, data_collator=collator).train()
    moved = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])}
    assert {"speech", "text", "classifier", "regressor"} <= moved  # both encoders and the fused heads learn

    model.save_pretrained(tmp_path / "joint")
    loaded = AutoModel.from_pretrained(tmp_path / "joint")
    assert isinstance(loaded, SERJointModel)
    batch = collator(list(tiny_corpus["test"].select(range(3))))
    batch.pop("labels"), batch.pop("attribute_labels")
    model.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits)
        torch.testing.assert_close(loaded(**batch).attributes, model(**batch).attributes)
