"""The ablation runner on the synthetic corpus with a tiny Whisper-style model, plus the imbalance
subsampling it is used with. Each run really trains (in a forked child process), so the sweeps
here are kept to a handful of one-epoch runs."""
from __future__ import annotations

import csv
import dataclasses
import math
import os
from pathlib import Path

import datasets
import numpy as np
import pytest

from ser_hf.sweeps.ablation import run_ablation
from ser_hf.sweeps.grid import convert_value, parse_assignments
from ser_hf.sweeps.reports import OUTPUT_FILES, summary_markdown
from ser_hf.sweeps.runner import LOG_FILE, SweepEngine
from ser_hf.sweeps.statistics import summarize
from ser_hf.data.subsample import apply_imbalance, parse_imbalance, subsample_classes

QUIET_CPU = SweepEngine(devices="cpu", progress=lambda line: None)

SYNTHETIC = {"num_utterances": 96, "num_speakers": 6}


def base_config() -> dict:
    from ser_hf.tiny import tiny_speech_backbone

    return {
        "corpus": "synthetic",
        "corpus_options": dict(SYNTHETIC),
        "validate_audio": False,
        "eval_split": "none",
        "backbone_config": tiny_speech_backbone("whisper", hidden_size=32, num_layers=1),
        "head_hidden_size": 16,
        "max_audio_seconds": 1.0,
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 32,
        "num_train_epochs": 1,
        "learning_rate": 1e-3,
        "eval_strategy": "no",
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


@pytest.fixture(scope="module")
def synthetic_corpus():
    """Generate the small synthetic corpus once (the runs then only read it from the cache)."""
    from ser_hf.data.corpora.synthetic import load_synthetic

    return load_synthetic(None, **SYNTHETIC)


def read_csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def headers_in_log(run_dir) -> int:
    with open(os.path.join(run_dir, LOG_FILE), encoding="utf-8") as handle:
        return sum(line.startswith("===== ser-hf ablate:") for line in handle)


# ------------------------------------------------------------------------------------------ sweeps
def test_sweep_resumes_only_missing_runs_and_writes_table_and_chart(tmp_path, synthetic_corpus):
    out = tmp_path / "sweep"
    grid = {"loss": ["ce", "focal"], "activation": ["relu", "mish"]}
    lines: list[str] = []
    engine = SweepEngine(devices="cpu", progress=lines.append)
    kwargs = dict(seeds=[0], output_dir=str(out), engine=engine)

    # "Killed" after two runs: the other two cells are missing, and reported as such.
    first = run_ablation(base_config(), grid, seeds=[0], output_dir=str(out), engine=dataclasses.replace(engine, max_runs=2))
    assert (first.counts.ran, first.counts.ok, first.counts.not_run, first.counts.skipped) == (2, 2, 2, 0)
    assert [r["status"] for r in first.results] == ["ok", "ok", "missing", "missing"]
    assert "Missing runs (not run yet): 2 in 2 cells" in (out / OUTPUT_FILES["summary_md"]).read_text()

    # Restarted: only the two missing runs train; the finished ones are not touched.
    second = run_ablation(base_config(), grid, **kwargs)
    assert (second.counts.ran, second.counts.skipped, second.counts.failed) == (2, 2, 0)
    assert [headers_in_log(run.run_dir) for run in second.runs] == [1, 1, 1, 1]
    assert any("2 already finished, 2 to run now" in line for line in lines)

    results = read_csv(out / OUTPUT_FILES["results"])
    assert [(r["loss"], r["activation"], r["status"]) for r in results] == [
        ("ce", "relu", "ok"), ("ce", "mish", "ok"), ("focal", "relu", "ok"), ("focal", "mish", "ok")
    ]
    for row in results:
        assert 0.0 <= float(row["macro_f1"]) <= 1.0 and 0.0 <= float(row["uar"]) <= 1.0
        assert os.path.isfile(row["log"])
    summary = read_csv(out / OUTPUT_FILES["summary_csv"])
    assert len(summary) == 4 and all(row["n_ok"] == "1" for row in summary)
    # The recorded metric is the one the run's own test_metrics.json holds.
    assert float(summary[0]["macro_f1_mean"]) == pytest.approx(second.results[0]["metrics"]["macro_f1"], abs=1e-6)
    table = (out / OUTPUT_FILES["summary_md"]).read_text()
    assert "| loss | activation | macro-F1 | UAR |" in table and table.count("(1)") == 8

    import matplotlib.image

    from ser_hf.plotting import bar_chart_size, figure_pixels

    image = matplotlib.image.imread(second.chart)
    width, height = figure_pixels(bar_chart_size(4))
    assert image.shape[:2] == (height, width)
    assert image[..., :3].std() > 0.05  # not a blank canvas

    # A third call finds everything done and trains nothing.
    third = run_ablation(base_config(), grid, **kwargs)
    assert (third.counts.ran, third.counts.skipped) == (0, 4)

    # Finished runs made with another base config are not silently mixed into the table.
    changed = {**base_config(), "learning_rate": 5e-3}
    with pytest.raises(ValueError, match="different config"):
        run_ablation(changed, grid, **kwargs)


def test_failed_run_is_recorded_not_fatal(tmp_path, synthetic_corpus):
    out = tmp_path / "sweep"
    grid = {"train_split": ["train", "nosuch"]}  # valid type, fails inside the run (no such split)
    report = run_ablation(
        base_config(), grid, fixed={"imbalance": ["N:0.5"]}, seeds=[0], output_dir=str(out), engine=QUIET_CPU,
    )
    assert (report.counts.ok, report.counts.failed) == (1, 1)
    ok, failed = read_csv(out / OUTPUT_FILES["results"])
    assert ok["status"] == "ok" and failed["status"] == "failed"
    assert "nosuch" in failed["error"] and failed["macro_f1"] == ""
    log = Path(failed["log"]).read_text(encoding="utf-8")
    assert "Traceback" in log and "nosuch" in log
    # The --set imbalance reached experiment.train: half of the neutral training rows were dropped.
    ok_log = Path(ok["log"]).read_text(encoding="utf-8")
    neutral = synthetic_corpus["train"]["label"].count("N")
    assert "imbalance 'N:0.5'" in ok_log and f"N {neutral}->{round(neutral / 2)}" in ok_log
    table = (out / OUTPUT_FILES["summary_md"]).read_text()
    assert "| nosuch | failed | failed |" in table and "Failed runs:" in table

    again = run_ablation(
        base_config(), grid, fixed={"imbalance": ["N:0.5"]}, seeds=[0], output_dir=str(out),
        engine=dataclasses.replace(QUIET_CPU, retry_failed=False),
    )
    assert (again.counts.ran, again.counts.skipped) == (0, 2)


def test_subprocess_launcher_runs_a_fresh_interpreter(tmp_path, synthetic_corpus):
    """The GPU launcher (python -m ser_hf.sweeps.runner RUN_DIR, one CUDA_VISIBLE_DEVICES per run), here on
    CPU with a run that fails once its data are loaded: the failure comes back from the child."""
    report = run_ablation(
        base_config(), {"test_split": ["nosuch"]}, seeds=[0], output_dir=str(tmp_path / "sweep"),
        engine=dataclasses.replace(QUIET_CPU, launcher="subprocess"),
    )
    (row,) = report.results
    assert (report.counts.ran, row["status"]) == (1, "failed")
    assert row["error"].startswith("ConfigError: split 'nosuch' not in corpus")
    log = Path(row["log"]).read_text(encoding="utf-8")
    assert "device=cpu" in log and "Traceback" in log


# ------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "grid, message",
    [
        ({"losss": ["ce"]}, "unknown argument 'losss'"),
        ({"loss": ["ce", "bogus"]}, "loss='bogus' is not valid"),
        ({"learning_rate": ["fast"]}, "value 'fast' of learning_rate"),
        ({"activation": ["relu", "swishy"]}, "activation='swishy'"),
        ({"backbone_config": ["{}"]}, "mapping"),
        ({"seed": ["1", "2"]}, "use --seeds"),
        ({"imbalance": ["Q:0.5"]}, "names classes"),
        ({"imbalance": ["A=0.5"]}, "CLASS:KEEP_FRACTION"),
    ],
)
def test_grid_is_validated_before_any_run(tmp_path, grid, message):
    with pytest.raises(ValueError, match=message):
        run_ablation(base_config(), grid, output_dir=str(tmp_path / "x"), engine=QUIET_CPU)
    assert not (tmp_path / "x" / "runs").exists()


def test_cli_reports_bad_grid_and_dry_run_lists_runs(tmp_path, capsys):
    import yaml

    from ser_hf.commands.ablate import main

    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump(base_config()))
    assert main(["--config", str(config), "--grid", "loss=ce,nope", "--output_dir", str(tmp_path / "o")]) == 2
    assert "loss='nope'" in capsys.readouterr().err
    code = main([
        "--config", str(config), "--grid", "loss=ce,focal", "sampler=none,up", "--seeds", "3,4",
        "--output_dir", str(tmp_path / "o"), "--devices", "cpu", "--dry_run",
    ])
    lines = [line for line in capsys.readouterr().out.splitlines() if ": to run" in line]
    assert code == 0 and len(lines) == 8
    assert lines[0].endswith("loss-ce_sampler-none/seed3: to run")  # seed-major order
    assert lines[4].endswith("loss-ce_sampler-none/seed4: to run")


def test_parse_and_convert_values():
    assert parse_assignments(["loss=ce,focal", "sampler=up"]) == {"loss": ["ce", "focal"], "sampler": ["up"]}
    assert parse_assignments(["imbalance=A:0.1, E:0.2"], multiple=False) == {"imbalance": ["A:0.1, E:0.2"]}
    for bad in (["loss"], ["loss=ce,,focal"], ["loss=ce,ce"], ["loss=ce", "loss=focal"]):
        with pytest.raises(ValueError):
            parse_assignments(bad)
    assert convert_value("x", "true", bool) is True
    assert convert_value("x", "false", bool) is False
    assert convert_value("x", "none", int | None) is None
    assert convert_value("x", "none", str | None) == "none"  # eval_split=none, sampler=none are strings
    assert convert_value("x", "3", int | None) == 3
    assert convert_value("x", "1 0.5 2", list[float] | None) == [1.0, 0.5, 2.0]
    assert convert_value("x", "1e-4", float) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="does not fit"):
        convert_value("x", "maybe", bool)


# ------------------------------------------------------------------------------------------ tables
def _row(loss, seed, status="ok", f1=None, error=None):
    return {"loss": loss, "seed": seed, "status": status, "metrics": {} if f1 is None else {"macro_f1": f1},
            "error": error}


def test_summary_mean_std_and_markdown():
    results = [
        _row("ce", 0, f1=0.40), _row("ce", 1, f1=0.50), _row("ce", 2, f1=0.60),
        _row("focal", 0, f1=0.70), _row("focal", 1, status="failed", error="RuntimeError: boom"),
        _row("up", 0, status="missing"),
    ]
    summary = summarize(results, ["loss"], ["macro_f1"])
    ce, focal, up = summary
    assert ce["macro_f1_mean"] == pytest.approx(0.5) and ce["macro_f1_std"] == pytest.approx(0.1)  # sample std
    assert (focal["n_ok"], focal["n_failed"], math.isnan(focal["macro_f1_std"])) == (1, 1, True)
    assert (up["n_missing"], math.isnan(up["macro_f1_mean"])) == (1, True)
    table = summary_markdown(summary, ["loss"], ["macro_f1"])
    assert "| ce | 0.500 ± 0.100 (3) |" in table
    assert "| focal | **0.700 (1)** |" in table  # best mean in bold; one run has no std
    assert "| up | missing |" in table and "seed 1: RuntimeError: boom" in table


def test_markdown_compare_puts_values_side_by_side():
    results = [
        {**_row("ce", 0, f1=0.3), "imbalance": "none"}, {**_row("ce", 0, f1=0.2), "imbalance": "A:0.1"},
        {**_row("focal", 0, f1=0.35), "imbalance": "none"}, {**_row("focal", 0, f1=0.3), "imbalance": "A:0.1"},
    ]
    summary = summarize(results, ["loss", "imbalance"], ["macro_f1"])
    table = summary_markdown(summary, ["loss", "imbalance"], ["macro_f1"], compare="imbalance")
    assert "| loss | macro-F1 (imbalance=none) | macro-F1 (imbalance=A:0.1) |" in table
    assert "| ce | 0.300 (1) | 0.200 (1) |" in table
    assert "| focal | **0.350 (1)** | **0.300 (1)** |" in table


# ------------------------------------------------------------------------------------------ imbalance
def _labelled(codes):
    return datasets.Dataset.from_dict({"id": [f"u{i}" for i in range(len(codes))], "label": codes})


def test_parse_imbalance():
    assert parse_imbalance("A:0.15 E:0.15;F:0.3") == {"A": 0.15, "E": 0.15, "F": 0.3}
    assert parse_imbalance("none") == {} and parse_imbalance(None) == {} and parse_imbalance(" ") == {}
    for bad, message in [("A:1.5", r"\[0, 1\]"), ("A:x", "not a number"), ("A:0.1 A:0.2", "twice"), ("A", "CLASS:KEEP")]:
        with pytest.raises(ValueError, match=message):
            parse_imbalance(bad)


def test_subsample_classes_is_deterministic_and_touches_only_listed_classes():
    codes = ["A"] * 40 + ["B"] * 20 + ["C"] * 10
    data = _labelled(list(np.random.default_rng(0).permutation(codes)))
    subset, report = subsample_classes(data, {"A": 0.25, "C": 0.05}, seed=3)
    assert report == {"A": (40, 10), "B": (20, 20), "C": (10, 1)}  # a kept class never vanishes
    assert sorted(subset["label"]).count("B") == 20 and len(subset) == 31
    ids = subset["id"]
    assert ids == sorted(ids, key=lambda u: int(u[1:]))  # original order kept
    again, _ = subsample_classes(data, {"A": 0.25, "C": 0.05}, seed=3)
    assert again["id"] == ids
    other_seed, _ = subsample_classes(data, {"A": 0.25, "C": 0.05}, seed=4)
    assert other_seed["id"] != ids
    # A class's subset does not depend on the other classes' fractions.
    only_a, _ = subsample_classes(data, {"A": 0.25}, seed=3)
    assert [u for u, c in zip(only_a["id"], only_a["label"]) if c == "A"] == [
        u for u, c in zip(ids, subset["label"]) if c == "A"
    ]
    with pytest.raises(ValueError, match="not among the labels"):
        subsample_classes(data, {"Z": 0.5}, labels=["A", "B", "C"])
    with pytest.raises(ValueError, match="no rows"):
        subsample_classes(data, {"D": 0.5}, labels=["A", "B", "C", "D"])
    assert apply_imbalance(data, "none") is data


def test_paired_effects_pair_runs_that_differ_in_one_setting():
    from ser_hf.sweeps.reports import effects_markdown
    from ser_hf.sweeps.statistics import paired_effects

    scores = {("ce", "relu"): [0.30, 0.40], ("focal", "relu"): [0.35, 0.50], ("ce", "mish"): [0.32, 0.41],
              ("focal", "mish"): [0.30, None]}
    results = []
    for (loss, activation), per_seed in scores.items():
        for seed, f1 in enumerate(per_seed):
            results.append({**_row(loss, seed, status="ok" if f1 is not None else "failed", f1=f1),
                            "activation": activation})
    effects = paired_effects(results, ["loss", "activation"], "macro_f1")
    focal, mish = effects
    # focal - ce: relu seed0 +0.05, relu seed1 +0.10, mish seed0 -0.02 (mish seed1 failed: no pair)
    assert (focal["value"], focal["baseline"], focal["pairs"], focal["better"]) == ("focal", "ce", 3, 2)
    assert focal["mean_diff"] == pytest.approx((0.05 + 0.10 - 0.02) / 3)
    # mish - relu: ce +0.02, +0.01; focal seed0 -0.05
    assert (mish["pairs"], mish["better"]) == (3, 2) and mish["mean_diff"] == pytest.approx((0.02 + 0.01 - 0.05) / 3)
    assert "| loss=focal | loss=ce | +0.043 ± 0.060 | 2/3 |" in effects_markdown(effects, "macro_f1")
