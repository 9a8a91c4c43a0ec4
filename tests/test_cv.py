"""Cross-validation folds (`ser_hf.data.folds`) and `ser-hf cv` on the synthetic corpus: every fold
is a real one-epoch run of a tiny model in its own process; a killed cv resumes without redoing
finished folds."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import datasets
import pytest
import yaml

from ser_hf.sweeps.runner import SweepEngine
from ser_hf.data.folds import PRESETS, apply_fold, fold_assignment, resolve_scheme, session_of
from ser_hf.data.schema import rows_to_dataset_dict
from ser_hf.sweeps.cv import OUTPUT_FILES, run_cv

from test_ablation import SYNTHETIC, base_config  # the same tiny model and corpus


def toy_corpus(speakers: dict[str, str], per_speaker: int = 2) -> datasets.DatasetDict:
    rows = [
        {"id": f"{spk}_{i}", "audio": f"/x/{spk}_{i}.wav", "label": "A" if i % 2 else "B", "speaker": spk,
         "gender": gender, "split": "train" if n % 3 else "test"}
        for n, (spk, gender) in enumerate(speakers.items()) for i in range(per_speaker)
    ]  # fmt: skip
    return rows_to_dataset_dict(rows)


# ------------------------------------------------------------------------------------------ folds
def test_leave_one_speaker_out_holds_out_each_speaker_once():
    corpus = toy_corpus({"03": "M", "08": "F", "09": "F", "10": "M"})
    seen = []
    for fold in range(4):
        split = apply_fold(corpus, "speaker", fold)
        assert list(split) == ["train", "test"]
        test_speakers = set(split["test"]["speaker"])
        assert len(test_speakers) == 1 and not test_speakers & set(split["train"]["speaker"])
        assert len(split["train"]) + len(split["test"]) == 8 and set(split["test"]["split"]) == {"test"}
        seen += sorted(test_speakers)
    assert seen == ["03", "08", "09", "10"]


def test_session_folds_group_both_speakers_of_a_session_and_dev_is_the_next_fold():
    speakers = {f"Ses0{s}{g}": g for s in range(1, 6) for g in "FM"}
    corpus = toy_corpus(speakers)
    names, assignment = fold_assignment(corpus["train"].to_list() + corpus["test"].to_list(), "iemocap_loso", "iemocap")
    assert names == ["Ses01", "Ses02", "Ses03", "Ses04", "Ses05"]
    split = apply_fold(corpus, "session", 4, dev_fold=True)
    assert set(split["test"]["speaker"]) == {"Ses05F", "Ses05M"}
    assert set(split["dev"]["speaker"]) == {"Ses01F", "Ses01M"}  # wraps around
    assert len(set(split["train"]["speaker"])) == 6
    assert session_of("S01F") == "S01" and session_of("M03") == "03"
    with pytest.raises(ValueError, match=r"is not <session><M\|F>"):
        session_of("1001")


def test_k_folds_are_speaker_disjoint_and_gender_balanced():
    speakers = {f"{i:02d}": "F" if i % 2 else "M" for i in range(1, 25)}
    rows = toy_corpus(speakers)["train"].to_list() + toy_corpus(speakers)["test"].to_list()
    names, assignment = fold_assignment(rows, "ravdess_speaker_folds", "ravdess")
    assert len(names) == 6
    for fold in range(6):
        members = [s for s, f in assignment.items() if f == fold]
        assert len(members) == 4 and sorted(speakers[s] for s in members) == ["F", "F", "M", "M"]


@pytest.mark.parametrize(
    "folds, corpus, message",
    [("iemocap_loso", "emodb", "is for corpus 'iemocap'"), ("1", None, "a number K >= 2"), ("bogus", None, "preset")],
)
def test_bad_fold_protocols(folds, corpus, message):
    with pytest.raises(ValueError, match=message):
        resolve_scheme(folds, corpus)


def test_fold_out_of_range_and_too_many_folds():
    corpus = toy_corpus({"a": "M", "b": "F"})
    with pytest.raises(ValueError, match="out of range"):
        apply_fold(corpus, "speaker", 2)
    with pytest.raises(ValueError, match="3 folds need at least 3 speakers"):
        apply_fold(corpus, "3", 0)
    assert set(PRESETS) >= {"iemocap_loso", "emodb_loso", "ravdess_speaker_folds", "crema_d_speaker_folds"}


# ------------------------------------------------------------------------------------------ ser-hf cv
def read_csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def synthetic_corpus():
    from ser_hf.data.corpora.synthetic import load_synthetic

    return load_synthetic(None, **SYNTHETIC)


def cv_config() -> dict:
    return {**base_config(), "train_split": "train+dev", "eval_split": "none"}


def test_cv_runs_every_fold_and_pools_predictions(tmp_path, synthetic_corpus):
    out = tmp_path / "cv"
    lines: list[str] = []
    kwargs = dict(seeds=[0], output_dir=str(out), engine=SweepEngine(devices="cpu", progress=lines.append))
    report = run_cv(cv_config(), "2", **kwargs)
    assert (report.counts.ran, report.counts.ok) == (2, 2)
    logs = [run.run_dir for run in report.runs]
    # Every utterance of the corpus is tested exactly once, by the fold that held its speaker out.
    all_ids = sorted(i for split in synthetic_corpus.values() for i in split["id"])
    pooled_dir = out / OUTPUT_FILES["pooled_dir"] / "base"
    pooled_rows = read_csv(pooled_dir / OUTPUT_FILES["pooled_predictions"])
    assert sorted(r["id"] for r in pooled_rows) == all_ids
    fold_speakers = [set(r["speaker"] for r in read_csv(os.path.join(d, "test_predictions.csv"))) for d in logs]
    assert all(not a & b for i, a in enumerate(fold_speakers) for b in fold_speakers[i + 1:])
    for run_dir, speakers in zip(logs, fold_speakers):
        config = yaml.safe_load(open(os.path.join(run_dir, "config.yaml")))
        assert config["cv_folds"] == "2" and config["test_split"] == "test"

    # Pooled metrics are recomputed from the pooled predictions, and they differ from the fold mean in general.
    pooled = json.loads((pooled_dir / OUTPUT_FILES["pooled_metrics"]).read_text())
    correct = sum(r["true_label"] == r["predicted_label"] for r in pooled_rows)
    assert pooled["accuracy"] == pytest.approx(correct / len(pooled_rows))
    assert sum(map(sum, pooled["confusion_matrix"])) == len(all_ids)
    (entry,) = report.summary
    fold_f1 = [r["metrics"]["macro_f1"] for r in report.results]
    assert entry["macro_f1_mean"] == pytest.approx(sum(fold_f1) / 2)
    assert entry["macro_f1_pooled"] == pytest.approx(pooled["macro_f1"])
    summary = (out / OUTPUT_FILES["summary_md"]).read_text()
    assert "macro-F1 (fold mean ± std)" in summary and "### Per fold" in summary and summary.count("| 0 | ") == 2

    import matplotlib.image

    image = matplotlib.image.imread(report.confusion_pngs[0])
    assert image[..., :3].std() > 0.05


def test_cv_composes_with_a_grid_and_validates_first(tmp_path, capsys):
    from ser_hf.commands.cv import main

    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump(cv_config()))
    out = tmp_path / "o"
    assert main(["--config", str(config), "--folds", "session", "--output_dir", str(out), "--dry_run"]) == 2
    assert "session folds cannot be formed" in capsys.readouterr().err
    assert main(["--config", str(config), "--folds", "3", "--grid", "cv_fold=1", "--output_dir", str(out)]) == 2
    assert "set by ser-hf cv" in capsys.readouterr().err
    code = main([
        "--config", str(config), "--folds", "3", "--grid", "loss=ce,focal", "--seeds", "0,1",
        "--output_dir", str(out), "--devices", "cpu", "--dry_run",
    ])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.endswith(": to run")]
    assert code == 0 and len(lines) == 2 * 2 * 3  # cell x seed x fold
    assert "loss-ce/seed0/fold0 (held out:" in lines[0] and "loss-ce/seed0/fold2" in lines[2]
    assert "loss-focal/seed0/fold0" in lines[3] and "loss-ce/seed1/fold0" in lines[6]


def test_killed_cv_command_resumes_without_redoing_finished_folds(tmp_path, synthetic_corpus):
    """`kill PID` of a running `ser-hf cv` after its first fold finished; the rerun trains only the second."""
    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump(cv_config()))
    out = tmp_path / "cv"
    command = [sys.executable, "-m", "ser_hf.cli", "cv", "--config", str(config), "--folds", "2",
               "--seeds", "0", "--output_dir", str(out), "--devices", "cpu"]  # fmt: skip
    first_result = out / "runs" / "base" / "seed0" / "fold0" / "result.json"
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 400  # generous: the CI machine may be shared
    while not first_result.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert first_result.exists(), process.stdout.read() if process.poll() is not None else "fold 0 never finished"
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 130, output  # interrupted, not finished: fold 1 was still to train
    finished_before = first_result.stat().st_mtime_ns
    again = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 already finished, 1 to run now" in again.stdout
    assert first_result.stat().st_mtime_ns == finished_before
    assert headers_in_log_cv(first_result.parent) == 1
    assert [r["status"] for r in read_csv(out / OUTPUT_FILES["results"])] == ["ok", "ok"]


def headers_in_log_cv(run_dir) -> int:
    with open(os.path.join(run_dir, "train.log"), encoding="utf-8") as handle:
        return sum(line.startswith("===== ser-hf cv:") for line in handle)
