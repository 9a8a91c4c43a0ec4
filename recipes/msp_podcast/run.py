#!/usr/bin/env python
"""The MSP-Podcast recipe, every stage in order, each one launched with ``accelerate launch``.

    python recipes/msp_podcast/run.py --msp_root /data/MSP-Podcast --output_dir runs/msp_podcast

Stages (see README.md): transcribe -> speech_cat, speech_dim, text_cat, text_dim -> extract ->
fusion_cat, fusion_dim -> submission. Each stage's YAML in this folder is copied to
``<output_dir>/configs/<stage>.yaml`` with the run's paths and any overrides filled in, and the
stage runs ``ser-hf <command> --config`` on that copy, so every run is reproducible from its folder.
A stage that finished with the same configuration is skipped on a rerun (``--force`` redoes it),
and a training stage that was interrupted (killed, preempted: exit status 75 after SIGTERM) resumes
from its last checkpoint when rerun with the same configuration (``--resume_from_checkpoint last``);
with a changed configuration its old checkpoints are removed and it starts again.

Overrides: ``--set SCOPE.KEY=VALUE`` (VALUE is YAML) or ``--overrides FILE.yaml`` with
``{SCOPE: {KEY: VALUE}}``. SCOPE is a stage name or a group: ``trainers`` (the six stages that
train a model), ``train`` (the four fine-tunings), ``speech``, ``text``, ``fusion``. Narrower
scopes win.
"""
from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SPEECH_STAGES = ("speech_cat", "speech_dim")
TEXT_STAGES = ("text_cat", "text_dim")
TRAIN_STAGES = SPEECH_STAGES + TEXT_STAGES
FUSION_STAGES = ("fusion_cat", "fusion_dim")
STAGES = ("transcribe", *TRAIN_STAGES, "extract", *FUSION_STAGES, "submission")
GROUPS = {  # override scopes naming several stages; keys must be valid in each of them
    "trainers": TRAIN_STAGES + FUSION_STAGES,  # every stage that takes SERTrainingArguments
    "train": TRAIN_STAGES,
    "speech": SPEECH_STAGES,
    "text": TEXT_STAGES,
    "fusion": FUSION_STAGES,
}
# Which fine-tuned models feed each fusion stage: (audio, text). Categorical fusion uses the
# categorical models' features, attribute fusion the attribute models' (as the authors did).
FUSION_INPUTS = {"fusion_cat": ("speech_cat", "text_cat"), "fusion_dim": ("speech_dim", "text_dim")}
SUBMISSION_FILES = {"fusion_cat": "task1_categorical.csv", "fusion_dim": "task2_attributes.csv"}

logger = logging.getLogger("msp_podcast")


# ----------------------------------------------------------------------------------------- options
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--msp_root", required=True, help="MSP-Podcast folder (Labels/, Audios/, Transcripts/).")
    parser.add_argument("--output_dir", required=True, help="Everything the run writes goes here.")
    parser.add_argument(
        "--submission_split",
        default="auto",
        help="Split the challenge files are written for: test3 (the challenge's evaluation set) when the "
        "corpus has it, else test (auto), or any split name.",
    )
    parser.add_argument(
        "--unlabelled_audio",
        default=None,
        help="Glob (relative to Audios/) of evaluation files missing from labels_consensus.csv, e.g. '*test3*'; "
        "they are added as an unlabelled Split_Set (--unlabelled_split_set) in a copy of the labels file.",
    )
    parser.add_argument("--unlabelled_split_set", default="Test3")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"Comma-separated subset of {', '.join(STAGES)}.")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="SCOPE.KEY=VALUE")
    parser.add_argument("--overrides", default=None, help="YAML file {scope: {key: value}} applied before --set.")
    parser.add_argument(
        "--launcher",
        choices=("accelerate", "python", "inprocess"),
        default="accelerate",
        help="accelerate: `accelerate launch` per stage (default); python: one plain process per stage; "
        "inprocess: call the CLI in this process (tests, debugging).",
    )
    parser.add_argument(
        "--accelerate_args",
        default="",
        help="Extra `accelerate launch` options, e.g. '--num_processes 4 --mixed_precision bf16'.",
    )
    parser.add_argument("--force", action="store_true", help="Rerun stages that already finished.")
    parser.add_argument("--dry_run", action="store_true", help="Write the configs and print the commands only.")
    args = parser.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        parser.error(f"unknown stages {unknown}; choose from {', '.join(STAGES)}")
    args.stages = [s for s in STAGES if s in stages]
    return args


def _parse_value(text: str):
    return yaml.safe_load(text) if text.strip() else ""


def collect_overrides(args: argparse.Namespace) -> dict[str, dict]:
    """{scope: {key: value}} from --overrides then --set (later wins); scopes are checked."""
    overrides: dict[str, dict] = {}
    if args.overrides:
        with open(args.overrides, encoding="utf-8") as handle:
            loaded = yaml.safe_load(handle) or {}
        if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
            raise ValueError(f"{args.overrides}: expected a mapping of scope -> {{key: value}}")
        for scope, values in loaded.items():
            overrides.setdefault(scope, {}).update(values)
    for item in args.sets:
        target, sep, value = item.partition("=")
        scope, dot, key = target.partition(".")
        if not sep or not dot or not key:
            raise ValueError(f"--set {item!r}: expected SCOPE.KEY=VALUE, e.g. train.num_train_epochs=1")
        overrides.setdefault(scope, {})[key] = _parse_value(value)
    bad = sorted(set(overrides) - set(GROUPS) - set(STAGES))
    if bad:
        raise ValueError(f"unknown override scopes {bad}; use a stage ({', '.join(STAGES)}) or group ({', '.join(GROUPS)})")
    return overrides


def stage_overrides(stage: str, overrides: dict[str, dict]) -> dict:
    """Overrides for one stage: its groups, broadest first, then the stage itself."""
    merged: dict = {}
    for scope in ("trainers", "train", "speech", "text", "fusion", stage):
        if scope in overrides and (scope == stage or stage in GROUPS.get(scope, ())):
            merged.update(overrides[scope])
    return merged


# ------------------------------------------------------------------------------------------ corpus
def unlabelled_labels_file(msp_root: str, pattern: str, split_set: str, output_dir: str) -> str:
    """A copy of labels_consensus.csv plus one unlabelled row per matching audio file it lacks.

    The challenge's evaluation audio may ship without rows in the labels file; the loader needs a
    row to know a file exists. Returns the copy's absolute path (the original is left alone).
    """
    from ser_hf.data.corpora.msp_podcast import COLUMNS, LABELS_FILE
    from ser_hf.io import write_csv_atomic

    source = os.path.join(msp_root, LABELS_FILE)
    with open(source, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    listed = {row["FileName"] for row in rows}
    found = sorted(os.path.basename(p) for p in glob.glob(os.path.join(msp_root, "Audios", pattern)))
    if not found:
        raise ValueError(f"--unlabelled_audio {pattern!r} matches no file in {os.path.join(msp_root, 'Audios')}")
    added = [name for name in found if name not in listed]
    logger.info("%d files match %r; %d are not in %s and are added as %s", len(found), pattern, len(added), source, split_set)
    rows += [dict(FileName=name, SpkrID="Unknown", Gender="Unknown", Split_Set=split_set) for name in added]
    path = os.path.abspath(os.path.join(output_dir, "labels", "labels_consensus.csv"))
    write_csv_atomic(path, COLUMNS, ([row.get(column) or "" for column in COLUMNS] for row in rows))
    return path


def survey_corpus(msp_root: str, corpus_options: dict) -> tuple[list[str], list[str]]:
    """(labelled splits, unlabelled splits) of the corpus; a split with no label and no rating is unlabelled."""
    from ser_hf.data.corpora import load_corpus

    corpus = load_corpus("msp_podcast", msp_root, **corpus_options)
    labelled, unlabelled = [], []
    for name, split in corpus.items():
        has_targets = any(split[column].count(None) < len(split) for column in ("label", "arousal", "valence", "dominance"))
        (labelled if has_targets else unlabelled).append(name)
    for needed in ("train", "dev"):
        if needed not in labelled:
            raise ValueError(f"{msp_root}: the recipe needs a labelled {needed!r} split; the corpus has {list(corpus)}")
    return labelled, unlabelled


# ------------------------------------------------------------------------------------------ stages
@dataclass
class Job:
    """One launch: ``ser-hf <command> --config <output_dir>/configs/<label>.yaml``.

    ``depends`` names the jobs whose outputs it reads: a rerun of one of them reruns this job too.
    """

    label: str
    config: dict
    command: str
    depends: tuple[str, ...] = ()
    single_process: bool = False


def load_recipe_yaml(name: str) -> dict:
    with open(os.path.join(HERE, f"{name}.yaml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


class Plan:
    """The resolved configuration of every stage of one run, and the commands that run them."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.msp_root = os.path.abspath(args.msp_root)
        self.out = os.path.abspath(args.output_dir)
        self.overrides = collect_overrides(args)
        self.msp_options: dict = {}
        if args.unlabelled_audio:
            self.msp_options["labels_file"] = unlabelled_labels_file(
                self.msp_root, args.unlabelled_audio, args.unlabelled_split_set, self.out
            )
        self.labelled, self.unlabelled = survey_corpus(self.msp_root, self.msp_options)
        split = args.submission_split
        if split == "auto":
            split = "test3" if "test3" in self.labelled + self.unlabelled else "test"
        if split not in self.labelled + self.unlabelled:
            raise ValueError(f"submission split {split!r} is not in the corpus (splits: {self.labelled + self.unlabelled})")
        self.submission_split = split
        self.test_split = "test" if "test" in self.labelled else "none"
        # Text models train on labelled splits only; features are extracted for every split used.
        self.extract_splits = list(dict.fromkeys(["train", "dev", *(["test"] if self.test_split == "test" else []), split]))
        self.manifests = {"labelled": self.labelled}
        if any(s not in self.labelled for s in self.extract_splits):
            self.manifests["all"] = list(dict.fromkeys(self.labelled + self.extract_splits))

    # -- helpers
    def path(self, *parts: str) -> str:
        return os.path.join(self.out, *parts)

    def training_split_map(self) -> dict:
        """Split_Set -> split name for training: unlabelled sets are left out (they have no targets)."""
        from ser_hf.data.corpora.msp_podcast import DEFAULT_SPLITS

        return {key: (name if name not in self.unlabelled else None) for key, name in DEFAULT_SPLITS.items()}

    def manifest(self, key: str) -> str:
        """Path of a transcribed manifest: ``labelled`` (text training) or ``all`` (extraction)."""
        key = key if key in self.manifests else "labelled"
        return self.path("transcripts", f"{key}.jsonl")

    def resolve(self, stage: str, config: dict, injected: dict) -> dict:
        """Recipe YAML + the run's paths, then the user's overrides (which win)."""
        resolved = dict(config)
        resolved.update(injected)
        resolved.update(stage_overrides(stage, self.overrides))
        return resolved

    # -- the stages
    def transcribe(self) -> list[Job]:
        base = load_recipe_yaml("transcribe")
        jobs = []
        for key, splits in self.manifests.items():  # ASR runs once: the second job is all cache hits
            injected = dict(
                data_path=self.msp_root,
                output=self.manifest(key),
                splits=",".join(splits),
                cache_dir=self.path("transcripts", "asr_cache"),
            )
            if self.msp_options:
                injected["corpus_options"] = dict(self.msp_options)
            jobs.append(Job(f"transcribe_{key}", self.resolve("transcribe", base, injected), "transcribe"))
        return jobs

    def train(self, stage: str) -> list[Job]:
        base = load_recipe_yaml(stage)
        injected = dict(output_dir=self.path(stage), test_split=self.test_split)
        depends: tuple[str, ...] = ()
        if stage in SPEECH_STAGES:
            options = dict(base.get("corpus_options") or {})
            options.update(self.msp_options, splits=self.training_split_map())
            injected.update(data_path=self.msp_root, corpus_options=options)
        else:
            injected.update(data_path=self.manifest("labelled"))
            depends = ("transcribe_labelled",)
        return [Job(stage, self.resolve(stage, base, injected), "train", depends)]

    def extract(self) -> list[Job]:
        base = load_recipe_yaml("extract")
        jobs = []
        for model in TRAIN_STAGES:
            injected = dict(model=self.path(model), output_dir=self.path("features", model), split="+".join(self.extract_splits))
            depends = (model,)
            if model in SPEECH_STAGES:
                injected.update(corpus="msp_podcast", data_path=self.msp_root)
                if self.msp_options:
                    injected["corpus_options"] = dict(self.msp_options)
            else:
                injected.update(corpus="manifest", data_path=self.manifest("all"))
                depends += (f"transcribe_{'all' if 'all' in self.manifests else 'labelled'}",)
            jobs.append(Job(f"extract_{model}", self.resolve("extract", base, injected), "extract", depends))
        return jobs

    def fusion(self, stage: str) -> list[Job]:
        audio, text = FUSION_INPUTS[stage]
        injected = dict(
            audio_features=self.path("features", audio),
            text_features=self.path("features", text),
            output_dir=self.path(stage),
            test_split=self.test_split,
        )
        depends = (f"extract_{audio}", f"extract_{text}")
        return [Job(stage, self.resolve(stage, load_recipe_yaml(stage), injected), "fuse", depends)]

    def jobs(self, stage: str) -> list[Job]:
        if stage == "transcribe":
            return self.transcribe()
        if stage in TRAIN_STAGES:
            return self.train(stage)
        if stage == "extract":
            return self.extract()
        if stage in FUSION_STAGES:
            return self.fusion(stage)
        raise ValueError(f"stage {stage!r} is not a launched stage")


# ----------------------------------------------------------------------------------------- running
def _read_marker(plan: Plan, label: str) -> dict:
    path = plan.path(".stages", f"{label}.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _digest(job: Job, plan: Plan) -> str:
    """Configuration of the job and of everything upstream of it (through the upstream markers)."""
    upstream = {label: _read_marker(plan, label).get("digest", "") for label in job.depends}
    payload = json.dumps({"config": job.config, "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def launch_command(command: str, config_path: str, args: argparse.Namespace, single_process: bool) -> list[str]:
    cli = [command, "--config", config_path]
    if args.launcher == "inprocess":
        return cli
    if args.launcher == "python":
        return [sys.executable, "-m", "ser_hf.cli", *cli]
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", *shlex.split(args.accelerate_args)]
    if single_process:  # a stage that must not be shared out over processes
        accelerate = [a for a in accelerate if a != "--multi_gpu"] + ["--num_processes", "1"]
    return [*accelerate, "-m", "ser_hf.cli", *cli]


TRAINING_COMMANDS = ("train", "fuse")  # stages that write Trainer checkpoints and can resume from them


def _resume_or_restart(job: Job, plan: Plan, digest: str) -> list[str]:
    """Extra CLI arguments for a training job: resume an interrupted run of the same configuration
    from its newest checkpoint; otherwise clear checkpoints another configuration left behind."""
    if job.command not in TRAINING_COMMANDS:
        return []
    import shutil

    output_dir = job.config.get("output_dir")
    started = _read_marker(plan, f"{job.label}.started")
    if not plan.args.force and started.get("digest") == digest:
        logger.info("[%s] interrupted before; resuming from its last checkpoint", job.label)
        return ["--resume_from_checkpoint", "last"]
    stale = sorted(glob.glob(os.path.join(glob.escape(output_dir), "checkpoint-*"))) if output_dir else []
    if stale and not plan.args.dry_run:
        logger.info("[%s] removing %d checkpoint(s) of an earlier configuration in %s", job.label, len(stale), output_dir)
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
    return []


def run_job(job: Job, plan: Plan) -> None:
    """Write the job's config, then launch it unless it finished before with the same inputs."""
    from ser_hf.io import write_json_atomic, write_text_atomic

    args, label = plan.args, job.label
    config_path = plan.path("configs", f"{label}.yaml")
    digest = _digest(job, plan)
    write_text_atomic(config_path, yaml.safe_dump(job.config, sort_keys=False))
    if not args.force and _read_marker(plan, label).get("digest") == digest:
        logger.info("[%s] done before with this configuration and inputs; skipping (--force reruns)", label)
        return
    argv = launch_command(job.command, config_path, args, job.single_process) + _resume_or_restart(job, plan, digest)
    shown = " ".join(shlex.quote(a) for a in argv) if args.launcher != "inprocess" else f"ser-hf {' '.join(argv)}"
    logger.info("[%s] %s", label, shown)
    if args.dry_run:
        return
    start = time.time()
    if job.command in TRAINING_COMMANDS:
        write_json_atomic(plan.path(".stages", f"{label}.started.json"), {"digest": digest})
    if args.launcher == "inprocess":
        from ser_hf.cli import main as cli_main

        code = cli_main(argv)
    else:
        code = subprocess.run(argv, check=False).returncode
    if code == 75:  # ser_hf.resume.PREEMPTED_EXIT_CODE: SIGTERM, a checkpoint was saved
        raise SystemExit(f"stage {label} was stopped by SIGTERM after saving a checkpoint; rerun to resume it: {shown}")
    if code:
        raise SystemExit(f"stage {label} failed with exit code {code}: {shown}")
    marker = {"digest": digest, "seconds": round(time.time() - start, 1), "command": shown}
    write_json_atomic(plan.path(".stages", f"{label}.json"), marker)


def write_submission(plan: Plan) -> list[str]:
    """The fusion heads' predictions for the submission split as the challenge's two CSV files.

    Each fusion model also gets the full evaluation report for that split (metrics when it has
    labels; predictions either way) in ``submission/<stage>_<split>/``. Attribute predictions are
    clipped to the corpus's 1-7 scale, as the challenge baseline does; the number clipped is logged.
    """
    import numpy as np
    import torch

    from ser_hf.commands.fuse import select_rows_by_split
    from ser_hf.data.corpora import load_corpus
    from ser_hf.evaluation.report import FILES, Predictions, write_evaluation_report
    from ser_hf.features import join_feature_datasets, load_features
    from ser_hf.io import atomic_path
    from ser_hf.modeling.fusion import SERFusionModel

    split = plan.submission_split
    rows = load_corpus("msp_podcast", plan.msp_root, **plan.msp_options)[split].to_list()
    written = []
    for stage in FUSION_STAGES:
        audio, text = FUSION_INPUTS[stage]
        blocks = {"audio": load_features(plan.path("features", audio)), "text": load_features(plan.path("features", text))}
        part = select_rows_by_split(join_feature_datasets(blocks), split)
        index = {row_id: i for i, row_id in enumerate(part["id"])}
        missing = [row["id"] for row in rows if row["id"] not in index]
        if missing:
            raise ValueError(f"{len(missing)} {split} utterances have no cached features (first: {missing[:5]}); rerun extract")
        features = torch.tensor(np.asarray(part["features"], dtype=np.float32)[[index[row["id"]] for row in rows]])
        model = SERFusionModel.from_pretrained(plan.path(stage)).eval()
        with torch.inference_mode():
            outputs = [model(features=chunk) for chunk in torch.split(features, 4096)]
        logits = attributes = None
        if model.config.has_categorical:
            logits = torch.cat([o.logits for o in outputs]).numpy()
        if model.config.has_attributes:
            raw = torch.cat([o.attributes for o in outputs]).numpy()
            low, high = model.config.attribute_range
            attributes = np.clip(raw, low, high)
            clipped = int((attributes != raw).sum())
            if clipped:
                logger.info("%s: %d of %d attribute predictions clipped to [%g, %g]", stage, clipped, raw.size, low, high)
        report_dir = plan.path("submission", f"{stage}_{split}")
        write_evaluation_report(
            report_dir, Predictions(logits=logits, attributes=attributes), rows, model.config, title=f"{stage} {split}"
        )
        source = os.path.join(report_dir, FILES["task1" if model.config.has_categorical else "task2"])
        target = plan.path("submission", SUBMISSION_FILES[stage])
        with open(source, "rb") as handle, atomic_path(target) as tmp:
            with open(tmp, "wb") as out:
                out.write(handle.read())
        logger.info("[submission] %s: %d rows of %s", target, len(rows), split)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    plan = Plan(args)
    logger.info(
        "labelled splits %s, unlabelled %s; submission files for %r", plan.labelled, plan.unlabelled, plan.submission_split
    )
    for stage in args.stages:
        if stage == "submission":
            if not args.dry_run:
                write_submission(plan)
            continue
        for job in plan.jobs(stage):
            run_job(job, plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
