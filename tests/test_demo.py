"""`ser-hf demo`: a reduced run (smallest synthetic corpus, one epoch per stage) produces the
table in three formats and both plots; the recipes in recipes/demo are the demo's own stages."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import yaml

from ser_hf.demo import SYSTEMS, TABLE_METRICS, stage_configs, weak_attribute_checks

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    from ser_hf.commands.demo import main

    output_dir = tmp_path_factory.mktemp("demo") / "out"
    assert main(["--quick", "--output_dir", str(output_dir)]) == 0
    return output_dir, json.loads((output_dir / "results.json").read_text())


def test_quick_demo_writes_the_table_and_plots(quick_run):
    output_dir, results = quick_run
    assert results["quick"] is True and set(results["checks"]) == {
        "fusion_beats_text_on_arousal", "fusion_beats_speech_on_valence"}
    table = results["table"]
    assert [row["system"] for row in table] == list(SYSTEMS)
    for row in table:
        system = row["system"]
        for key in TABLE_METRICS:
            assert row[key] == pytest.approx(results["metrics"][system][key])  # the stages' own test metrics
            assert -1.0 <= row[key] <= 1.0

    markdown = (output_dir / "results.md").read_text()
    assert "| system | macro-F1 | UAR | CCC arousal | CCC valence | CCC dominance |" in markdown
    assert all(f"| {system} |" in markdown for system in SYSTEMS)
    with open(output_dir / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["system"] for r in rows] == list(SYSTEMS)
    assert float(rows[2]["ccc_valence"]) == pytest.approx(table[2]["ccc_valence"], abs=1e-4)
    for name in ("results.png", "predictions.png"):
        data = (output_dir / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    assert set(results["stage_seconds"]) == {"corpus", "speech", "text", "extract", "fusion", "report"}
    assert not [p for p in os.listdir(output_dir) if p.startswith(".tmp-")]  # atomic writes left nothing


def test_quick_demo_ran_the_real_pipeline(quick_run):
    from transformers import AutoConfig

    import ser_hf.modeling  # noqa: F401
    from ser_hf.features import read_feature_metadata

    output_dir, _ = quick_run
    speech = read_feature_metadata(str(output_dir / "features" / "speech"))
    text = read_feature_metadata(str(output_dir / "features" / "text"))
    assert speech["num_rows"] == text["num_rows"] == 48  # every utterance of train+dev+test
    fusion = AutoConfig.from_pretrained(output_dir / "fusion")
    assert fusion.model_type == "ser_fusion" and fusion.activation == "mish"
    assert fusion.input_sizes == [["audio", speech["feature_size"]], ["text", text["feature_size"]]]
    assert (output_dir / "configs" / "fusion.yaml").is_file()


def test_recipes_are_the_demo_stages():
    expected = stage_configs("demo_output")
    for stage, values in expected.items():
        recipe = yaml.safe_load((REPO / "recipes" / "demo" / f"{stage}.yaml").read_text())
        values = {k: v for k, v in values.items() if k != "tokenizer"}  # machine-specific: passed on the CLI
        assert recipe == json.loads(json.dumps(values)), stage  # tuples in code are lists in YAML


def test_weak_attribute_checks():
    metrics = {
        "speech": {"ccc_arousal": 0.7, "ccc_valence": 0.1},
        "text": {"ccc_arousal": 0.2, "ccc_valence": 0.6},
        "fusion": {"ccc_arousal": 0.6, "ccc_valence": 0.5},
    }
    assert weak_attribute_checks(metrics) == {"fusion_beats_text_on_arousal": True, "fusion_beats_speech_on_valence": True}
    metrics["fusion"]["ccc_valence"] = 0.05
    assert weak_attribute_checks(metrics)["fusion_beats_speech_on_valence"] is False
