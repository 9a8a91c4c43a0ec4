"""Checkpoints anyone can load: the model code ships with an ``auto_map`` and loads with
``trust_remote_code=True`` in a venv that has torch + transformers but not ser-hf (same logits to
1e-5); no local path is saved; ``pipeline("audio-classification")`` takes a wav path, a numpy array
and ``{"array", "sampling_rate"}`` at 16/22.05/44.1/48 kHz without FFmpeg or torchaudio."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from ser_hf.configuration import SERSpeechConfig
from ser_hf.modeling import SERFusionModel, SERModelForSpeech, build_feature_extractor
from ser_hf.modeling.fusion import SERFusionConfig
from ser_hf.tiny import tiny_speech_backbone

LABELS = ["A", "H", "N"]
NAMES = {"A": "angry", "H": "happy", "N": "neutral"}


def _speech_model(seed=0, **overrides):
    torch.manual_seed(seed)
    values = dict(backbone_config=tiny_speech_backbone(), labels=LABELS, label_names=NAMES, head_hidden_size=16,
                  layer_weighting="weighted_sum")
    values.update(overrides)
    model = SERModelForSpeech(SERSpeechConfig(**values)).eval()
    with torch.no_grad():  # non-trivial layer weights, so a loader that ignored them would differ
        model.layer_weights.copy_(torch.randn(model.layer_weights.shape))
    return model


def _tone(seconds=1.0, rate=16000, freq=300.0):
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def speech_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("portable") / "speech"
    model = _speech_model()
    model.save_pretrained(folder)
    build_feature_extractor(model.config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def python_without_ser_hf(tmp_path_factory):
    """A real venv that sees this venv's site-packages (torch, transformers) through a .pth line,
    which adds the folder without running its .pth files, so the editable ser-hf finder never loads."""
    root = tmp_path_factory.mktemp("venv_without_ser_hf")
    venv.create(root, with_pip=False)
    python = root / "bin" / "python"
    site = subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip()
    with open(os.path.join(site, "shared_site_packages.pth"), "w") as handle:
        handle.write(sysconfig.get_paths()["purelib"] + "\n")
    return str(python)


def _run_isolated(python, code, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(cwd / "hf_modules"))
    result = subprocess.run([python, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_checkpoint_ships_its_code_and_auto_map(speech_checkpoint):
    config = json.loads(open(os.path.join(speech_checkpoint, "config.json")).read())
    assert config["auto_map"] == {
        "AutoConfig": "configuration.SERSpeechConfig",
        "AutoModel": "speech.SERModelForSpeech",
        "AutoModelForAudioClassification": "speech.SERModelForSpeech",
    }
    for name in ("configuration.py", "speech.py", "base.py", "heads.py", "pooling.py"):
        code = open(os.path.join(speech_checkpoint, name)).read()
        assert "ser_hf" not in code.replace("from ser_hf.losses", "") or "try:" in code, name
    assert not [f for f in os.listdir(speech_checkpoint) if f.endswith((".bin", ".pt", ".pkl"))]


def test_loads_without_ser_hf_with_the_same_logits(speech_checkpoint, python_without_ser_hf, tmp_path):
    """A speech model (AutoModelForAudioClassification, AutoModel) and a fusion head (AutoModel), one subprocess."""
    wave = _tone()
    np.save(tmp_path / "wave.npy", wave)
    torch.manual_seed(1)
    fusion = SERFusionModel(SERFusionConfig(input_sizes={"audio": 8, "text": 4}, labels=LABELS, head_hidden_size=8)).eval()
    fusion.save_pretrained(tmp_path / "fusion")
    features = torch.randn(3, 12)
    np.save(tmp_path / "features.npy", features.numpy())
    code = f"""
        import sys
        try:
            import ser_hf
        except ImportError:
            pass
        else:
            sys.exit("ser_hf is importable in the isolated venv: " + ser_hf.__file__)
        import numpy as np, torch
        from transformers import AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification
        model = AutoModelForAudioClassification.from_pretrained({speech_checkpoint!r}, trust_remote_code=True).eval()
        assert type(model).__name__ == "SERModelForSpeech" and "transformers_modules" in type(model).__module__
        assert type(AutoModel.from_pretrained({speech_checkpoint!r}, trust_remote_code=True)).__name__ == "SERModelForSpeech"
        extractor = AutoFeatureExtractor.from_pretrained({speech_checkpoint!r})
        inputs = extractor(np.load("wave.npy"), sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            out = model(**inputs)
        np.save("logits.npy", out.logits.numpy())
        print(model.config.id2label[int(out.logits.argmax())])
        fusion = AutoModel.from_pretrained({str(tmp_path / "fusion")!r}, trust_remote_code=True).eval()
        with torch.no_grad():
            np.save("fused.npy", fusion(features=torch.from_numpy(np.load("features.npy"))).logits.numpy())
        assert not [m for m in sys.modules if m.startswith("ser_hf")]
    """
    printed = _run_isolated(python_without_ser_hf, code, tmp_path)
    model = _speech_model()
    with torch.no_grad():
        expected = model(**build_feature_extractor(model.config)(wave, sampling_rate=16000, return_tensors="pt")).logits
        fused = fusion(features=features).logits.numpy()
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), expected.numpy(), atol=1e-5)
    assert printed.strip() == NAMES[LABELS[int(expected.argmax())]]
    np.testing.assert_allclose(np.load(tmp_path / "fused.npy"), fused, atol=1e-5)


def test_no_local_path_in_config_of_a_model_on_a_local_encoder(tmp_path):
    from transformers import WavLMConfig, WavLMModel

    encoder_dir = tmp_path / "my-local-wavlm"
    WavLMModel(WavLMConfig(**{k: v for k, v in tiny_speech_backbone().items() if k != "model_type"})).save_pretrained(encoder_dir)
    model = SERModelForSpeech.from_backbone(str(encoder_dir), labels=LABELS, head_hidden_size=16)
    model.save_pretrained(tmp_path / "ckpt")
    text = (tmp_path / "ckpt" / "config.json").read_text()
    assert str(tmp_path) not in text
    assert json.loads(text)["backbone_name_or_path"] == "my-local-wavlm"
    assert model.config.backbone_name_or_path == str(encoder_dir)  # the live model keeps the real path


# ---------------------------------------------------------------------------------------------- pipeline
@pytest.fixture
def no_ffmpeg_no_torchaudio(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torchaudio", None)
    monkeypatch.setitem(sys.modules, "torchcodec", None)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("ffmpeg") is None


def test_pipeline_on_every_input_form(speech_checkpoint, no_ffmpeg_no_torchaudio, tmp_path):
    import ser_hf  # noqa: F401  (installs the ser-hf audio-classification pipeline)
    from transformers import pipeline

    classifier = pipeline("audio-classification", model=speech_checkpoint)
    model = _speech_model()
    extractor = build_feature_extractor(model.config)

    def scores(wave_16k):
        with torch.no_grad():
            logits = model(**extractor(wave_16k, sampling_rate=16000, return_tensors="pt")).logits
        return dict(zip((NAMES[c] for c in LABELS), logits.softmax(-1)[0].tolist()))

    def check(result, expected, atol):
        assert {r["label"] for r in result} == set(NAMES.values())
        for r in result:
            assert r["score"] == pytest.approx(expected[r["label"]], abs=atol)

    wave = _tone()
    original = scores(wave)
    check(classifier(wave), original, 1e-5)  # a bare array is at the model's rate
    for rate in (16000, 22050, 44100, 48000):
        resampled = soxr.resample(wave, 16000, rate) if rate != 16000 else wave
        source = {"array": resampled, "sampling_rate": rate}
        # resampled to 16 kHz, never read as 16 kHz: one second in is one second of features
        assert classifier.preprocess(dict(source))["input_values"].shape[-1] == pytest.approx(16000, abs=2)
        expected = scores(soxr.resample(resampled, rate, 16000) if rate != 16000 else wave)
        check(classifier(source), expected, 1e-5)
        check(classifier(source), original, 2e-2)  # and close to the never-resampled original
        path = tmp_path / f"clip_{rate}.wav"
        sf.write(path, resampled, rate, subtype="FLOAT")
        check(classifier(str(path)), expected, 1e-5)
        stereo = tmp_path / f"stereo_{rate}.flac"
        sf.write(stereo, np.stack([resampled, resampled], axis=1), rate)
        check(classifier(str(stereo)), original, 2e-2)


def test_auto_classes_without_flags(speech_checkpoint):
    import ser_hf  # noqa: F401
    from transformers import AutoConfig, AutoModelForAudioClassification

    assert type(AutoConfig.from_pretrained(speech_checkpoint)) is SERSpeechConfig  # local code, no remote code
    assert type(AutoModelForAudioClassification.from_pretrained(speech_checkpoint)) is SERModelForSpeech


# ---------------------------------------------------------------------------------------------- adapters
def _fake_hub_cache(cache, repo_id, folder):
    """``folder`` as huggingface_hub's cache holds a downloaded repo, so ``from_pretrained(repo_id)``
    resolves it offline exactly as it would after a download."""
    commit = "0" * 40
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)


def test_adapter_on_a_hub_base_loads_with_auto_peft_model(speech_checkpoint, tmp_path, monkeypatch):
    from huggingface_hub import ModelCard
    from peft import AutoPeftModelForFeatureExtraction

    from ser_hf.finetuning import apply_lora, load_ser_model, save_checkpoint

    cache = tmp_path / "hub_cache"
    _fake_hub_cache(cache, "ser-hf-tests/tiny-base", speech_checkpoint)
    base = SERModelForSpeech.from_pretrained("ser-hf-tests/tiny-base", cache_dir=str(cache))
    lora = apply_lora(base, base_model_name_or_path="ser-hf-tests/tiny-base")
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, parameter in lora.named_parameters():
            if ".lora_B." in name:
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
    save_checkpoint(lora, tmp_path / "adapter")
    for name in os.listdir(tmp_path / "adapter"):
        assert str(tmp_path) not in (tmp_path / "adapter" / name).read_bytes().decode("latin-1"), name
    adapter_config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "ser-hf-tests/tiny-base"
    assert adapter_config["task_type"] == "FEATURE_EXTRACTION"
    card = ModelCard.load(tmp_path / "adapter" / "README.md")
    assert card.data.base_model == "ser-hf-tests/tiny-base" and card.data.library_name == "peft"
    assert {"lora", "ser-hf", "base_model:adapter:ser-hf-tests/tiny-base"} <= set(card.data.tags)

    inputs = build_feature_extractor(base.config)(_tone(), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        expected = lora.eval()(**inputs).logits
        auto = AutoPeftModelForFeatureExtraction.from_pretrained(str(tmp_path / "adapter"), cache_dir=str(cache)).eval()
        torch.testing.assert_close(auto(**inputs).logits, expected, atol=1e-5, rtol=0)
        import huggingface_hub.constants

        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))  # ser-hf's loader: default cache
        ours = load_ser_model(tmp_path / "adapter").eval()
        torch.testing.assert_close(ours(**inputs).logits, expected, atol=1e-5, rtol=0)
