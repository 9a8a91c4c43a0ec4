"""`ser-hf ensemble` (mean / vote / stack) and the robustness report (`ser-hf evaluate --perturb`)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from ser_hf.evaluation.ensemble import StackedEnsemble, average, combine, majority_vote
from ser_hf.evaluation.report import FILES, Predictions

from test_evaluation import LABELS, corpus, save_tiny_model  # noqa: F401  (module fixture)


def assert_probabilities_are_the_members_mean(predictions_csv, members, corpus_path):
    """The ensemble's written class probabilities equal the mean of each member's own test predictions."""
    from ser_hf.arguments import DataArguments
    from ser_hf.experiment import predict_split

    with open(predictions_csv) as handle:
        lines = list(csv.DictReader(handle))
    data = DataArguments(corpus="manifest", data_path=str(corpus_path))
    member_probs = [predict_split(d, data, split="test", batch_size=5)[2].probabilities for d in members]
    ours = np.array([[float(line[f"prob_{c}"]) for c in LABELS] for line in lines])
    np.testing.assert_allclose(ours, np.mean(member_probs, 0), atol=1e-4)


def _predictions(seed, n=12, k=4):
    return Predictions(logits=np.random.default_rng(seed).normal(size=(n, k)) * 2,
                       attributes=np.random.default_rng(seed + 100).uniform(1, 7, size=(n, 3)))


def test_mean_and_vote_reference():
    members = [_predictions(s) for s in range(3)]
    mean = average(members)
    expected = np.mean([m.probabilities for m in members], 0)
    np.testing.assert_allclose(mean.probabilities, expected, atol=1e-9)
    np.testing.assert_allclose(mean.attributes, np.mean([m.attributes for m in members], 0))
    vote = majority_vote(members)
    ids = np.stack([m.predicted_ids for m in members])
    for row in range(12):
        counts = np.bincount(ids[:, row], minlength=4)
        winners = np.flatnonzero(counts == counts.max())
        assert vote.predicted_ids[row] in winners
        if len(winners) > 1:  # tie broken by the mean probability
            assert vote.predicted_ids[row] == winners[np.argmax(expected[row, winners])]
    with pytest.raises(ValueError, match="at least two"):
        combine("mean", members[:1])
    with pytest.raises(ValueError, match="unknown ensemble method"):
        combine("median", members)


def test_stack_learns_which_member_to_trust():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 200)
    good = Predictions(logits=np.eye(3)[truth] * 4 + rng.normal(size=(200, 3)))
    bad = Predictions(logits=rng.normal(size=(200, 3)) * 4)
    stacker = StackedEnsemble().fit([good, bad], truth, None)
    predicted = stacker.predict([good, bad]).predicted_ids
    assert (predicted == truth).mean() > 0.9


def test_ser_hf_ensemble_writes_a_report_with_member_scores(corpus, tmp_path, capsys):  # noqa: F811
    from ser_hf.commands.ensemble import main

    dirs = []
    for seed in range(2):
        torch.manual_seed(seed)
        save_tiny_model(tmp_path / f"m{seed}", "multitask")
        dirs.append(str(tmp_path / f"m{seed}"))
    # different weights per member: re-initialise the heads with different seeds
    from ser_hf.modeling import SERModelForSpeech

    for seed, folder in enumerate(dirs):
        model = SERModelForSpeech.from_pretrained(folder)
        torch.manual_seed(seed + 10)
        for p in model.classifier.parameters():
            torch.nn.init.normal_(p, std=0.5)
        model.save_pretrained(folder)
    out = tmp_path / "ens"
    argv = ["--models", *dirs, "--corpus", "manifest", "--data_path", str(corpus), "--split", "test",
            "--output_dir", str(out), "--bootstrap_resamples", "0", "--batch_size", "5"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((out / FILES["metrics"]).read_text())
    assert report["ensemble_method"] == "mean" and len(report["members"]) == 2
    assert report["member_mean"]["macro_f1"] == pytest.approx(np.mean([m["macro_f1"] for m in report["members"]]))
    assert printed["macro_f1"] == pytest.approx(report["macro_f1"])
    assert (out / FILES["task1"]).exists() and (out / FILES["task2"]).exists()
    # the ensemble's probabilities are the mean of the members' (from their own prediction files)
    assert_probabilities_are_the_members_mean(out / FILES["predictions"], dirs, corpus)
    with pytest.raises(ValueError, match="dev_split"):
        main([*argv[:-6], "--method", "stack"])


def test_checkpoint_weight_averaging(tmp_path):
    from ser_hf.evaluation.ensemble import average_checkpoint_weights
    from ser_hf.modeling import SERModelForSpeech

    for seed in range(2):
        torch.manual_seed(seed)
        model = save_tiny_model(tmp_path / f"c{seed}", "categorical")
        for p in model.parameters():
            torch.nn.init.normal_(p)
        model.save_pretrained(tmp_path / f"c{seed}")
    out = average_checkpoint_weights([str(tmp_path / "c0"), str(tmp_path / "c1")], str(tmp_path / "avg"))
    a, b, avg = (SERModelForSpeech.from_pretrained(p).state_dict() for p in (tmp_path / "c0", tmp_path / "c1", out))
    for key in a:
        if a[key].is_floating_point():
            torch.testing.assert_close(avg[key], (a[key] + b[key]) / 2)
    assert (tmp_path / "avg" / "preprocessor_config.json").exists()


def test_robustness_report_csv_png(corpus, tmp_path, capsys):  # noqa: F811
    from ser_hf.commands.evaluate import main

    save_tiny_model(tmp_path / "model", "categorical")
    out = tmp_path / "robust"
    argv = ["--model", str(tmp_path / "model"), "--corpus", "manifest", "--data_path", str(corpus), "--split", "test",
            "--output_dir", str(out), "--perturb", "noise:0", "band_limit:1000", "--batch_size", "8"]
    assert main(argv) == 0
    with open(out / "robustness.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["condition"] for r in rows] == ["clean", "noise:0", "band_limit:1000"]
    assert all(0 <= float(r["macro_f1"]) <= 1 for r in rows)
    from PIL import Image

    assert Image.open(out / "robustness.png").size[0] > 400
    # the degradation changes the model's input: predictions differ from clean for at least one condition
    result = json.loads((out / "robustness.json").read_text())
    assert len(result["conditions"]) == 3
    with pytest.raises(ValueError, match="output_dir"):
        main(argv[:-7] + ["--perturb", "noise"])
