"""recipes/iemocap/run.py: stage configs, the commands of every stage (dry run), per-fold fusion
wiring and its summary. (The whole pipeline trains for minutes, so here it is only planned; the
stage commands themselves are tested in test_cv.py and the fusion tests.)"""
from __future__ import annotations

import importlib.util
import json
import os

import pytest
import yaml

from helpers_audio import REPO_ROOT


def load_recipe():
    spec = importlib.util.spec_from_file_location("iemocap_run", REPO_ROOT / "recipes" / "iemocap" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_configs_are_valid_run_configs(tmp_path):
    from ser_hf.sweeps.grid import check_run_arguments

    recipe = load_recipe()
    overrides = tmp_path / "o.yaml"
    overrides.write_text(yaml.safe_dump({"speech": {"num_train_epochs": 2}, "fusion": {"head_hidden_size": 8}}))
    args = recipe.parse_args(["--iemocap_root", str(tmp_path / "IEMOCAP"), "--output_dir", str(tmp_path / "out"),
                              "--overrides", str(overrides)])  # fmt: skip
    paths = recipe.stage_configs(args)
    speech = yaml.safe_load(open(paths["speech"]))
    assert speech["data_path"] == str(tmp_path / "IEMOCAP") and speech["num_train_epochs"] == 2
    assert speech["corpus"] == "iemocap" and speech["corpus_options"]["class_set"] == "4"
    for stage in ("speech", "text"):
        config = {**yaml.safe_load(open(paths[stage])), "cv_folds": "iemocap_loso", "cv_fold": 0, "output_dir": str(tmp_path)}
        assert config.pop("bf16") is True  # a GPU recipe; this CPU test checks the arguments in float32
        check_run_arguments(config)  # every key is a real argument with a valid value
    assert yaml.safe_load(open(paths["fusion"]))["head_hidden_size"] == 8
    overrides.write_text(yaml.safe_dump({"speach": {}}))
    with pytest.raises(SystemExit, match="unknown stages"):
        recipe.stage_configs(args)


def test_dry_run_plans_cv_stages_then_per_fold_fusion(tmp_path, capsys):
    recipe = load_recipe()
    out = tmp_path / "out"
    base = ["--iemocap_root", str(tmp_path / "IEMOCAP"), "--output_dir", str(out), "--dry_run"]
    assert recipe.main(base) == 0
    printed = capsys.readouterr().out
    assert "cv --config" in printed and "speech.yaml --folds iemocap_loso" in printed and "text.yaml" in printed
    assert "fusion runs per fold once" in printed
    # Once both cv stages have their plans, fusion extracts each fold's models on that fold and fuses.
    for stage in ("speech", "text"):
        runs = [str(out / stage / "runs" / "base" / "seed7" / f"fold{k}") for k in range(5)]
        (out / stage).mkdir(parents=True, exist_ok=True)
        (out / stage / "cv.json").write_text(json.dumps({"runs": runs, "folds": "iemocap_loso",
                                                          "fold_names": [f"Ses0{k + 1}" for k in range(5)]}))  # fmt: skip
    assert recipe.main([*base, "--stages", "fusion"]) == 0
    printed = capsys.readouterr().out
    extracts = [line for line in printed.splitlines() if " extract " in line]
    fuses = [line for line in printed.splitlines() if " fuse " in line]
    assert len(extracts) == 10 and len(fuses) == 5
    assert "--cv_folds iemocap_loso" in extracts[0] and "--cv_fold 0" in extracts[0] and "--split train+test" in extracts[0]
    assert "speech/runs/base/seed7/fold4" in extracts[8] and "--cv_fold 4" in extracts[9]
    assert "fusion/features/speech/fold2" in fuses[2]


def test_fusion_summary_mean_and_std(tmp_path):
    recipe = load_recipe()
    folds = []
    for k, score in enumerate([0.5, 0.7]):
        folder = tmp_path / f"fold{k}"
        folder.mkdir()
        (folder / "test_metrics.json").write_text(json.dumps({"macro_f1": score, "uar": score, "accuracy": score}))
        folds.append(str(folder))
    text = recipe.fusion_summary(str(tmp_path), folds, ["Ses01", "Ses02"])
    assert "| 1 | Ses02 | 0.700 |" in text and "0.600 ± 0.141" in text
    assert os.path.isfile(tmp_path / "summary.md")
