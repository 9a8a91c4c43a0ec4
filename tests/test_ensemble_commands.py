"""``--models A B`` on `ser-hf evaluate` and `ser-hf predict`: the ensemble's report, submission files and
predictions are the members' combined outputs (mean of probabilities/attributes, or majority vote)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ser_hf.errors import ConfigError
from ser_hf.evaluation.report import FILES

from test_ensemble_robustness import assert_probabilities_are_the_members_mean
from test_evaluation import corpus, save_tiny_model  # noqa: F401  (module fixture)


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Two multitask checkpoints with different heads (so they disagree)."""
    from ser_hf.modeling import SERModelForSpeech

    root = tmp_path_factory.mktemp("members")
    dirs = []
    for seed in range(2):
        folder = root / f"m{seed}"
        save_tiny_model(folder, "multitask")
        model = SERModelForSpeech.from_pretrained(folder)
        torch.manual_seed(seed + 10)
        for p in model.classifier.parameters():
            torch.nn.init.normal_(p, std=0.5)
        model.save_pretrained(folder)
        dirs.append(str(folder))
    return dirs


def test_evaluate_models_writes_the_ensemble_report(corpus, members, tmp_path, capsys):  # noqa: F811
    from ser_hf.commands.evaluate import main

    out = tmp_path / "ens"
    common = ["--corpus", "manifest", "--data_path", str(corpus), "--split", "test", "--bootstrap_resamples", "0",
              "--batch_size", "5"]
    assert main(["--models", *members, *common, "--output_dir", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((out / FILES["metrics"]).read_text())
    assert report["ensemble_method"] == "mean" and report["models"] == members and len(report["members"]) == 2
    assert printed["member_mean"]["uar"] == pytest.approx(np.mean([m["uar"] for m in report["members"]]))
    assert (out / FILES["task1"]).exists() and (out / FILES["task2"]).exists()
    assert_probabilities_are_the_members_mean(out / FILES["predictions"], members, corpus)

    assert main(["--models", *members, *common, "--output_dir", str(tmp_path / "vote"), "--ensemble_method", "vote"]) == 0
    capsys.readouterr()
    votes = json.loads((tmp_path / "vote" / FILES["metrics"]).read_text())
    assert votes["ensemble_method"] == "vote"

    with pytest.raises(ConfigError, match="exactly one of --model"):
        main(["--model", members[0], "--models", *members, *common])
    with pytest.raises(ConfigError, match="exactly one of --model"):
        main(common)
    with pytest.raises(ConfigError, match="--perturb scores one model"):
        main(["--models", *members, *common, "--output_dir", str(tmp_path / "p"), "--perturb", "noise:10"])
    with pytest.raises(ConfigError, match="two or more"):
        main(["--models", members[0], *common])


def test_predict_models_combines_the_members(corpus, members, tmp_path, capsys):  # noqa: F811
    from ser_hf.commands.predict import main
    from ser_hf.inference import predict

    audio = [str(p) for p in sorted((corpus.parent / "audio").glob("test0[0-4].wav"))]
    singles = [predict(m, audio, num_workers=0, progress=False) for m in members]
    mean = predict(list(members), audio, num_workers=0, progress=False)
    vote = predict(list(members), audio, num_workers=0, progress=False, ensemble_method="vote")
    for i, row in enumerate(mean.files):
        expected = np.mean([[s.files[i]["probabilities"][n] for n in mean.labels] for s in singles], 0)
        np.testing.assert_allclose([row["probabilities"][n] for n in mean.labels], expected, atol=1e-5)
        expected_attributes = np.mean([[s.files[i]["attributes"][n] for n in mean.attributes] for s in singles], 0)
        np.testing.assert_allclose([row["attributes"][n] for n in mean.attributes], expected_attributes, atol=1e-4)
        # one window per file: the vote's top class is a member's top class (the more confident one on a tie)
        member_labels = [s.files[i]["label"] for s in singles]
        assert vote.files[i]["label"] in member_labels
        assert sum(vote.files[i]["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert mean.model.startswith("mean of ")

    out = tmp_path / "pred"
    assert main([*audio, "--models", *members, "--output_dir", str(out), "--num_workers", "0", "--no_timeline"]) == 0
    written = json.loads((out / "predictions.json").read_text())
    assert written["model"].startswith("mean of ") and len(written["files"]) == len(audio)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([audio[0], "--models", members[0]])  # one model is not an ensemble
    with pytest.raises(SystemExit):
        main([members[0]])  # a model and no audio
