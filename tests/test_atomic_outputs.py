"""Final models and feature sets are never left half-written where a later step would read them,
and temp folders a killed run left behind are cleared by the next save."""
from __future__ import annotations

import os

import datasets
import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_LABELS
from ser_hf.configuration import SERSpeechConfig
from ser_hf.modeling import SERModelForSpeech
from ser_hf.tiny import tiny_speech_backbone
from ser_hf.trainer import STAGING_FOLDER, SERTrainer
from ser_hf.training_args import SERTrainingArguments


def _trainer(tmp_path, seed: int) -> SERTrainer:
    torch.manual_seed(seed)
    config = SERSpeechConfig(backbone_config=tiny_speech_backbone(), labels=TINY_LABELS, head_hidden_size=8)
    args = SERTrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, disable_tqdm=True)
    return SERTrainer(model=SERModelForSpeech(config), args=args)


def test_final_model_save_is_atomic_and_clears_a_killed_runs_staging_folder(tmp_path, monkeypatch):
    out = tmp_path / "run"
    first = _trainer(out, 0)
    first.save_model()
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert not (out / STAGING_FOLDER).exists()
    saved = load_file(out / "model.safetensors")

    # a save that dies half-way (as kill -9 would): the published model is untouched
    second = _trainer(out, 1)

    def dies(self, save_directory, **kwargs):
        os.makedirs(save_directory, exist_ok=True)
        with open(os.path.join(save_directory, "model.safetensors"), "wb") as handle:
            handle.write(b"\0" * 10)  # truncated weights
        raise KeyboardInterrupt("killed while saving")

    with monkeypatch.context() as patch:
        patch.setattr(type(second.model), "save_pretrained", dies)
        with pytest.raises(KeyboardInterrupt):
            second.save_model()
    assert (out / STAGING_FOLDER / "model.safetensors").is_file()  # the debris is only in the staging folder
    still = load_file(out / "model.safetensors")
    assert all(torch.equal(still[k], saved[k]) for k in saved)

    second.save_model()  # the next save clears the debris and publishes the new weights
    assert not (out / STAGING_FOLDER).exists()
    new = load_file(out / "model.safetensors")
    assert any(not torch.equal(new[k], saved[k]) for k in saved)
    reloaded = SERModelForSpeech.from_pretrained(out)
    assert all(torch.equal(reloaded.state_dict()[k], v) for k, v in second.model.state_dict().items())


def test_feature_set_save_is_atomic_and_clears_stale_temp_folders(tmp_path, monkeypatch):
    from ser_hf.features import _save_dataset_atomically

    path = tmp_path / "features"
    _save_dataset_atomically(datasets.Dataset.from_dict({"id": ["a", "b"]}), str(path), {"version": 1})
    stale = [tmp_path / ".features.tmp-dead1", tmp_path / ".features.old-dead2"]
    for folder in stale:  # what kill -9 during a save leaves behind
        folder.mkdir()
        (folder / "junk.arrow").write_bytes(b"junk")

    def dies(self, target, *args, **kwargs):
        with open(os.path.join(target, "data-00000-of-00001.arrow"), "wb") as handle:
            handle.write(b"half")
        raise KeyboardInterrupt("killed while saving")

    with monkeypatch.context() as patch:
        patch.setattr(datasets.Dataset, "save_to_disk", dies)
        with pytest.raises(KeyboardInterrupt):
            _save_dataset_atomically(datasets.Dataset.from_dict({"id": ["x"]}), str(path), {"version": 2})
    assert datasets.load_from_disk(str(path))["id"] == ["a", "b"]  # the old set, whole
    assert not any(folder.exists() for folder in stale)

    _save_dataset_atomically(datasets.Dataset.from_dict({"id": ["x"]}), str(path), {"version": 2})
    assert datasets.load_from_disk(str(path))["id"] == ["x"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features"]
