"""Issue 13 strategies: soft labels end to end, focal on soft targets, the mixup family, augmentation."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch

from ser_hf.data.augment import Augmenter, Perturbation, add_noise, coloured_noise, parse_augment_config, parse_perturbations, rms
from ser_hf.data.collators import IGNORE_INDEX, SERTargets, SpeechCollator
from ser_hf.data.mixing import Mixer, parse_mixing_config
from ser_hf.data.randomness import EPOCH_KEY, INDEX_KEY
from ser_hf.data.soft_labels import distribution_from_votes, majority_label, parse_distribution, soft_label_metrics
from ser_hf.losses import FocalLoss, SoftTargetCrossEntropyLoss, SoftTargetFocalLoss, build_soft_target_loss

from conftest import TINY_LABELS
from test_trainer import make_trainer


# ------------------------------------------------------------------------------- focal on soft targets
def numpy_soft_focal(logits, targets, gamma, alpha=None):
    z = logits - logits.max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    p = np.exp(log_p)
    a = np.ones(logits.shape[1]) if alpha is None else np.asarray(alpha)
    per_row = -(targets * a * (1 - p) ** gamma * log_p).sum(1)
    keep = targets.sum(1) > 0
    return per_row[keep].mean()


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_soft_focal_matches_numpy_reference(gamma, weighted):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4)) * 3
    targets = rng.dirichlet(np.ones(4), size=6)
    targets[2] = 0.0  # an unlabelled row is skipped
    alpha = [0.5, 1.0, 2.0, 1.5] if weighted else None
    loss = SoftTargetFocalLoss(gamma=gamma, alpha=alpha)(torch.tensor(logits), torch.tensor(targets))
    assert loss.item() == pytest.approx(numpy_soft_focal(logits, targets, gamma, alpha), rel=1e-9)


def test_soft_focal_equals_focal_on_one_hot_targets():
    torch.manual_seed(0)
    logits = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    alpha = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0])
    hard = FocalLoss(gamma=2.0, alpha=alpha)(logits, labels)
    soft = SoftTargetFocalLoss(gamma=2.0, alpha=alpha)(logits, torch.nn.functional.one_hot(labels, 5).double())
    assert soft.item() == pytest.approx(hard.item(), rel=1e-12)
    soft.backward()
    assert torch.isfinite(logits.grad).all()


def test_soft_losses_reject_non_distributions():
    with pytest.raises(ValueError, match="row 1"):
        SoftTargetFocalLoss()(torch.zeros(2, 3), torch.tensor([[1.0, 0, 0], [0.5, 0.2, 0.1]]))
    loss = build_soft_target_loss("weighted_ce", class_counts=[4, 2, 2])
    assert isinstance(loss, SoftTargetCrossEntropyLoss) and loss.weight is not None
    # all-zero rows (no label) are skipped by the soft CE used in training
    value = loss(torch.zeros(2, 3, requires_grad=True), torch.tensor([[0.0, 0, 0], [0.0, 1.0, 0.0]]))
    assert value.item() == pytest.approx(np.log(3))


# ------------------------------------------------------------------------------- soft labels in data
def test_parse_distribution_forms_and_errors():
    assert parse_distribution("[0.25, 0.75]") == [0.25, 0.75]
    assert parse_distribution({"b": 1.0}, ["a", "b"]) == [0.0, 1.0]
    assert distribution_from_votes('{"a": 3, "b": 1}', ["a", "b"]) == [0.75, 0.25]
    assert majority_label([0.5, 0.5], ["a", "b"]) is None
    assert majority_label([0.2, 0.8], ["a", "b"]) == "b"
    with pytest.raises(ValueError, match="sums to 2"):
        parse_distribution([1, 1])
    with pytest.raises(ValueError, match="3 classes"):
        parse_distribution([0.5, 0.5], ["a", "b", "c"])
    with pytest.raises(ValueError, match="not in the labels"):
        distribution_from_votes({"z": 1}, ["a", "b"])


def _soft_manifest(tmp_path, tiny_manifest, bad_line: bool = False) -> str:
    """The tiny corpus with votes on every train row (3 for the label, 1 for the next class)."""
    with open(tiny_manifest) as handle:
        rows = list(csv.DictReader(handle))
    root = os.path.dirname(tiny_manifest)
    for i, row in enumerate(rows):
        row["audio"] = os.path.join(root, row["audio"])
        votes = {row["label"]: 3, TINY_LABELS[(TINY_LABELS.index(row["label"]) + 1) % 3]: 1}
        row["label_votes"] = json.dumps(votes) if row["split"] == "train" else ""
        if row["split"] == "dev":
            row["label"] = ""  # derived from the distribution (majority)
            row["label_distribution"] = json.dumps({row_label: v / 4 for row_label, v in votes.items()})
        else:
            row["label_distribution"] = ""
    if bad_line:
        rows[1]["label_votes"] = "[1, -2, 0]"
    path = tmp_path / "soft.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def test_manifest_votes_and_distributions(tmp_path, tiny_manifest):
    from ser_hf.data.corpora import load_corpus

    corpus = load_corpus("manifest", _soft_manifest(tmp_path, tiny_manifest), labels=TINY_LABELS)
    first = corpus["train"][0]
    assert first["label"] == "a" and first["label_distribution"] == pytest.approx([0.75, 0.25, 0.0])
    dev = corpus["dev"][0]
    assert dev["label"] == "a"  # majority of the distribution
    assert corpus["test"][0]["label_distribution"] is None
    from ser_hf.data.validation import DataValidationError

    with pytest.raises(DataValidationError, match=r"line 3: label_votes .* negative"):
        load_corpus("manifest", _soft_manifest(tmp_path, tiny_manifest, bad_line=True), labels=TINY_LABELS)


def test_msp_labels_detailed_become_distributions(tmp_path):
    from msp_fixture import build_msp_corpus

    from ser_hf.data.corpora import load_corpus

    fixture = build_msp_corpus(tmp_path / "msp", detailed=True)
    corpus = load_corpus("msp_podcast", str(tmp_path / "msp"))
    labels = list(corpus["train"].features and ("A", "S", "H", "U", "F", "D", "C", "N"))
    for row in corpus["train"]:
        votes = [v for v in fixture.votes[row["id"] + ".wav"] if v != "O"]  # O is excluded by default
        expected = [votes.count(code) / len(votes) for code in labels]
        assert row["label_distribution"] == pytest.approx(expected)
        if row["label"] is not None:
            assert majority_label(row["label_distribution"], labels) == row["label"]


def test_targets_emit_soft_rows():
    targets = SERTargets(labels=TINY_LABELS, soft="annotators")
    rows = [{"label": "a", "label_distribution": [0.6, 0.4, 0.0]}, {"label": "c"}, {"label": None}]
    out = targets(rows)
    assert out["labels"].tolist() == [0, 2, IGNORE_INDEX]
    assert np.allclose(out["label_distribution"].numpy(), [[0.6, 0.4, 0.0], [0, 0, 1], [0, 0, 0]])
    onehot = SERTargets(labels=TINY_LABELS, soft="onehot")(rows)["label_distribution"]
    assert onehot[0].tolist() == [1.0, 0.0, 0.0]


def test_soft_label_metrics_reference():
    q = np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 0.0]])
    p = np.array([[0.5, 0.5], [0.9, 0.1], [0.3, 0.7]])
    out = soft_label_metrics(p, q)
    assert out["soft_label_rows"] == 2
    assert out["soft_kl"] == pytest.approx((0.0 - np.log(0.9)) / 2)
    assert out["soft_ce"] == pytest.approx((np.log(2) - np.log(0.9)) / 2)


def test_soft_ce_trains_on_manifest_distributions(tmp_path, tiny_manifest):
    from ser_hf.data.corpora import load_corpus

    corpus = load_corpus("manifest", _soft_manifest(tmp_path, tiny_manifest), labels=TINY_LABELS)
    trainer = make_trainer(corpus, tmp_path, loss="soft_ce", max_steps=2)
    seen = []
    original = trainer.soft_categorical_loss.forward
    trainer.soft_categorical_loss.forward = lambda logits, targets: (seen.append(targets.clone()), original(logits, targets))[1]
    trainer.train()
    assert seen and any((batch.max(1).values < 1).any() for batch in seen)  # annotator distributions, not one-hot
    metrics = trainer.evaluate()
    assert "eval_soft_kl" in metrics and "eval_macro_f1" in metrics and metrics["eval_soft_label_rows"] == len(corpus["dev"])


@pytest.mark.parametrize("loss", ["soft_ce", "focal"])
def test_soft_losses_train_on_msp_votes(tmp_path, loss):
    from msp_fixture import build_msp_corpus

    from ser_hf.configuration import SERSpeechConfig
    from ser_hf.data.corpora import load_corpus
    from ser_hf.data.corpora.msp_podcast import LABELS
    from ser_hf.modeling import SERModelForSpeech, build_feature_extractor
    from ser_hf.tiny import tiny_speech_backbone
    from ser_hf.trainer import SERTrainer
    from ser_hf.training_args import SERTrainingArguments

    build_msp_corpus(tmp_path / "msp", detailed=True)
    corpus = load_corpus("msp_podcast", str(tmp_path / "msp"))
    train = corpus["train"].filter(lambda row: row["label"] is not None)
    config = SERSpeechConfig(backbone_config=tiny_speech_backbone(), labels=list(LABELS), head_hidden_size=8, max_audio_seconds=1.0)
    model = SERModelForSpeech(config)
    extractor = build_feature_extractor(config)
    args = SERTrainingArguments(output_dir=str(tmp_path / "out"), loss=loss, soft_labels=True, class_weighting="inverse",
                                max_steps=2, per_device_train_batch_size=4, report_to=[], save_strategy="no", use_cpu=True)
    trainer = SERTrainer(model=model, args=args, train_dataset=train, data_collator=SpeechCollator(extractor, SERTargets.for_config(config)))
    expected = SoftTargetFocalLoss if loss == "focal" else SoftTargetCrossEntropyLoss
    assert isinstance(trainer.soft_categorical_loss, expected)
    assert getattr(trainer.soft_categorical_loss, "alpha", getattr(trainer.soft_categorical_loss, "weight", None)) is not None
    assert np.isfinite(trainer.train().training_loss)


# ------------------------------------------------------------------------------- mixing
def _rows(n, epoch=0, labels=("a", "b", "c", "a")):
    return [{"id": str(i), "label": labels[i % len(labels)], EPOCH_KEY: epoch, INDEX_KEY: 10 + i,
             "arousal": float(i), "valence": 1.0, "dominance": None} for i in range(n)]


def test_mixup_mixes_signal_and_labels_with_the_same_lambda():
    mixer = Mixer.from_config({"type": "input", "alpha": 0.4}, seed=3)
    rows = _rows(4)
    waves = [np.full(100, float(i + 1), dtype=np.float32) for i in range(4)]
    targets = SERTargets(labels=TINY_LABELS, attributes=("arousal", "valence", "dominance"), soft="onehot")(rows)
    original = {k: v.clone() for k, v in targets.items()}
    plan = mixer.plan(rows, waves, (targets["label_distribution"].sum(1) > 0).numpy())
    assert plan.mixed.any()
    mixed = mixer.mix_waves(waves, plan)
    Mixer.mix_targets(targets, plan)
    for i in range(4):
        j, lam = plan.partner[i], plan.label_weight[i]
        assert mixed[i][0] == pytest.approx(lam * (i + 1) + (1 - lam) * (j + 1), rel=1e-5)
        expected = lam * original["label_distribution"][i] + (1 - lam) * original["label_distribution"][j]
        assert torch.allclose(targets["label_distribution"][i], expected)
        assert targets["label_distribution"][i].sum().item() == pytest.approx(1.0)
        assert targets["attribute_labels"][i, 0].item() == pytest.approx(lam * i + (1 - lam) * j, rel=1e-5)
        assert torch.isnan(targets["attribute_labels"][i, 2])  # a missing attribute stays missing
    # same (seed, epoch, index) -> same plan; another epoch -> another plan
    again = mixer.plan(_rows(4), waves, None)
    assert np.array_equal(again.partner, plan.partner) and np.allclose(again.label_weight, plan.label_weight)
    other = mixer.plan(_rows(4, epoch=1), waves, None)
    assert not (np.array_equal(other.partner, plan.partner) and np.allclose(other.label_weight, plan.label_weight))


@pytest.mark.parametrize("weights", ["energy", "equal"])
def test_overlap_labels_by_energy_share_or_equally(weights):
    mixer = Mixer.from_config({"type": "overlap", "label_weights": weights, "level_db": [-6, -6]}, seed=0)
    rows = _rows(6)
    waves = [np.sin(np.arange(400) * (0.05 + 0.01 * i)).astype(np.float32) * 0.1 * (i + 1) for i in range(6)]
    plan = mixer.plan(rows, waves, None)
    assert plan.mixed.any()
    mixed = mixer.mix_waves(waves, plan)
    for i in np.flatnonzero(plan.mixed):
        j = plan.partner[i]
        assert np.allclose(mixed[i], waves[i] + plan.partner_gain[i] * waves[j], atol=1e-5)
        if weights == "equal":
            assert plan.label_weight[i] == 0.5
        else:  # partner 6 dB below the row: energy share 1 / (1 + 10**-0.6)
            assert plan.label_weight[i] == pytest.approx(1 / (1 + 10 ** -0.6), rel=1e-6)


def test_mixing_never_touches_evaluation_rows():
    mixer = Mixer.from_config("input")
    rows = [{"id": "x", "label": "a"}, {"id": "y", "label": "b"}]
    assert mixer.plan(rows, [np.zeros(10)] * 2, None) is None
    with pytest.raises(ValueError, match="mixing.type"):
        parse_mixing_config({"type": "cutmix"})


def test_manifold_mixup_mixes_pooled_vectors():
    from ser_hf.configuration import SERSpeechConfig
    from ser_hf.modeling import SERModelForSpeech
    from ser_hf.modeling.mixup import manifold_mixup
    from ser_hf.tiny import tiny_speech_backbone

    torch.manual_seed(0)
    model = SERModelForSpeech(SERSpeechConfig(backbone_config=tiny_speech_backbone(), labels=TINY_LABELS, head_hidden_size=8)).eval()
    x = torch.randn(3, 8000)
    plain = model(input_values=x).pooled_output
    index, lam = torch.tensor([1, 0, 2]), torch.tensor([0.7, 0.2, 1.0])
    with manifold_mixup(model, index, lam):
        mixed = model(input_values=x).pooled_output
    expected = lam[:, None] * plain + (1 - lam[:, None]) * plain[index]
    assert torch.allclose(mixed, expected, atol=1e-5)
    assert torch.allclose(model(input_values=x).pooled_output, plain, atol=1e-6)  # hook removed


@pytest.mark.parametrize("mixing", ["input", "manifold", "overlap"])
def test_mixing_trains_with_balanced_sampler_and_multitask(tiny_corpus, tmp_path, mixing):
    trainer = make_trainer(tiny_corpus, tmp_path, task="multitask", loss="focal", class_weighting="inverse",
                           sampler="up", mixing=mixing, max_steps=2)
    batches = []
    original = trainer.soft_categorical_loss.forward
    trainer.soft_categorical_loss.forward = lambda logits, targets: (batches.append(targets.clone()), original(logits, targets))[1]
    assert np.isfinite(trainer.train().training_loss)
    assert any((b.max(1).values < 1).any() for b in batches)  # mixed rows are distributions


# ------------------------------------------------------------------------------- augmentation
AUG = {"speed": [0.9, 1.1], "noise": {"p": 1.0}, "reverb": {"p": 1.0}, "gain": {"p": 1.0}, "band_limit": {"p": 1.0}}


def test_augmentation_is_a_function_of_seed_epoch_index():
    aug = Augmenter.from_config(AUG, seed=1)
    wave = np.sin(np.arange(8000) * 0.07).astype(np.float32)
    row = {"id": "u", EPOCH_KEY: 2, INDEX_KEY: 5}
    first = aug.waveform(wave, row)
    assert not np.array_equal(first, wave)
    assert np.array_equal(aug.waveform(wave, dict(row)), first)
    assert not np.array_equal(aug.waveform(wave, {**row, EPOCH_KEY: 3}), first)
    assert not np.array_equal(Augmenter.from_config(AUG, seed=2).waveform(wave, row), first)


def test_augmentation_never_touches_evaluation(tiny_corpus):
    from ser_hf.configuration import SERSpeechConfig
    from ser_hf.modeling import build_feature_extractor
    from ser_hf.tiny import tiny_speech_backbone

    config = SERSpeechConfig(backbone_config=tiny_speech_backbone(), labels=TINY_LABELS)
    extractor = build_feature_extractor(config)
    plain = SpeechCollator(extractor, SERTargets.for_config(config), max_seconds=1.0)
    augmented = SpeechCollator(extractor, SERTargets(labels=TINY_LABELS, soft="onehot"), max_seconds=1.0,
                               augmenter=Augmenter.from_config(AUG), mixer=Mixer.from_config("input"))
    rows = [tiny_corpus["test"][i] for i in range(3)]
    a, b = plain(rows), augmented(rows)
    assert torch.equal(a["input_values"], b["input_values"]) and "mix_index" not in b
    tagged = [{**row, EPOCH_KEY: 0, INDEX_KEY: i} for i, row in enumerate(rows)]
    assert not torch.equal(augmented(tagged)["input_values"], a["input_values"])


def test_specaugment_masks_log_mel_training_rows_only():
    from ser_hf.configuration import SERSpeechConfig
    from ser_hf.modeling import build_feature_extractor
    from ser_hf.tiny import tiny_speech_backbone

    config = SERSpeechConfig(backbone_config=tiny_speech_backbone("whisper"), labels=TINY_LABELS, max_audio_seconds=1.0)
    extractor = build_feature_extractor(config)
    aug = Augmenter.from_config({"specaugment": {"freq_masks": 2, "freq_width": 5, "time_masks": 2, "time_width": 10}}, seed=0)
    features = torch.randn(2, extractor.feature_size, 100)
    rows = [{"id": "a", EPOCH_KEY: 0, INDEX_KEY: 0}, {"id": "b"}]
    out = aug.spectral(features, rows, [60, 60])
    assert torch.equal(out[1], features[1])  # evaluation row untouched
    changed = (out[0] != features[0])
    assert changed.any() and not changed[:, 60:].any()  # only inside the valid frames
    assert torch.equal(aug.spectral(features, rows, [60, 60]), out)


def test_noise_hits_the_requested_snr():
    rng = np.random.default_rng(0)
    wave = np.sin(np.arange(16000) * 0.1).astype(np.float32)
    noise = coloured_noise(16000, "pink", rng)
    noisy = add_noise(wave, noise, 10.0)
    assert 20 * np.log10(rms(wave) / rms(noisy - wave)) == pytest.approx(10.0, abs=1e-3)


def test_augment_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown transform 'echo'"):
        parse_augment_config({"echo": {}})
    with pytest.raises(ValueError, match="snr_db"):
        parse_augment_config({"noise": {"snr_db": [20, 5]}})
    with pytest.raises(ValueError, match="does not exist"):
        parse_augment_config({"noise": {"folder": str(tmp_path / "none")}})
    assert parse_augment_config("waveform")["speed"]["factors"] == [0.9, 1.0, 1.1]
    assert parse_augment_config('{"gain": {}}')["gain"]["db"] == [-6.0, 6.0]


def test_perturbations_are_deterministic():
    items = parse_perturbations(["noise:20,0", "reverb", "band_limit:2000"])
    assert [p.label for p in items][:3] == ["clean", "noise:20", "noise:0"]
    wave = np.sin(np.arange(8000) * 0.2).astype(np.float32)
    row = {"id": "x"}
    for p in items:
        assert np.array_equal(p(wave, row, 16000), p(wave, row, 16000))
    with pytest.raises(ValueError, match="unknown degradation"):
        parse_perturbations(["wind"])
    assert isinstance(items[0], Perturbation)


def test_augment_and_mixing_fields_in_training(tiny_corpus, tmp_path):
    trainer = make_trainer(tiny_corpus, tmp_path, augment={"noise": {"p": 1.0}, "gain": {}}, mixing='{"type": "input"}', max_steps=1)
    collator = trainer._training_collator()
    assert collator.augmenter is not None and collator.mixer.kind == "input" and collator.targets.soft == "onehot"
    assert trainer.data_collator.augmenter is None  # evaluation collator untouched
    assert np.isfinite(trainer.train().training_loss)
    from ser_hf.training_args import SERTrainingArguments

    with pytest.raises(ValueError, match="unknown transform"):
        SERTrainingArguments(output_dir=str(tmp_path), augment={"wind": {}}, report_to=[])


def test_mask_time_prob_reaches_wav2vec2_family_encoders_only():
    from ser_hf.arguments import ModelArguments
    from ser_hf.experiment import build_model
    from ser_hf.tiny import tiny_speech_backbone

    args = ModelArguments(backbone_config=tiny_speech_backbone("wavlm", mask_time_prob=0.0), mask_time_prob=0.2, mask_feature_prob=0.1)
    model, _ = build_model(args, labels=TINY_LABELS, label_names=None, attribute_range=None)
    assert model.backbone.config.mask_time_prob == 0.2 and model.config.backbone_config["mask_feature_prob"] == 0.1
    assert model.backbone.masked_spec_embed is not None
    whisper = ModelArguments(backbone_config=tiny_speech_backbone("whisper"), mask_time_prob=0.2)
    with pytest.raises(ValueError, match="augment.specaugment"):
        build_model(whisper, labels=TINY_LABELS, label_names=None, attribute_range=None)


def test_training_batch_is_a_function_of_seed_epoch_index(tiny_corpus, tmp_path):
    """What exact resume relies on: the same tagged rows give the same augmented, mixed batch in any
    process (a fresh collator), and another epoch gives another batch."""
    trainer = make_trainer(tiny_corpus, tmp_path, augment="waveform", mixing="input", seed=5)
    rows = [{**tiny_corpus["train"][i], EPOCH_KEY: 3, INDEX_KEY: i} for i in range(4)]
    first = trainer._training_collator()(rows)
    again = make_trainer(tiny_corpus, tmp_path, augment="waveform", mixing="input", seed=5)._training_collator()(rows)
    for key in first:
        assert torch.equal(first[key], again[key]), key
    later = trainer._training_collator()([{**row, EPOCH_KEY: 4} for row in rows])
    assert not torch.equal(first["input_values"], later["input_values"])
