"""A causal-LM study: its config, the guard's config.json (model and data), training on the head of the
queue with release afterwards, and the example study end to end under Snakemake."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO, env, make_project, snakemake
from lm_helpers import TRAIN_CHATS, VAL_CHATS, write_jsonl

from autopilot import fsio, guard, schemas
from autopilot.errors import ConfigError, GuardRejected, LoopHalted
from autopilot.ingest import claims, queue
from autopilot.ingest.checks import Settings
from autopilot.ingest.inbox import add_file, check_file
from autopilot.ingest.specs import load_spec
from autopilot.ops.scaffold import QUICK_STUDY
from autopilot.paths import Project
from autopilot.study import Study, check_config

EXAMPLE = REPO / "config" / "studies" / "lm_sft.yaml"
FAST_BASELINE = {"max_steps": 4, "epochs": 1, "batch_size": 8, "save_every": 2, "max_length": 96}


def example_config(**changes) -> dict:
    config = yaml.safe_load(EXAMPLE.read_text())
    config["baseline"].update(FAST_BASELINE)
    config["judge"] = dict(QUICK_STUDY["judge"])  # the quick study's few seeds
    return {**config, **changes}


def test_the_example_study_and_its_data_are_valid():
    study = Study.load(Project(REPO), EXAMPLE)
    assert study.config["task"] == "causal_lm" and study.config["metric"] == {"name": "val_loss", "goal": "minimize"}
    settings = Settings.from_config({"level": "standard"}, REPO)
    for key in ("train_file", "val_file"):
        scan = check_file(REPO / study.config["data"][key], load_spec("chat_sft_v1"), settings)
        assert scan.accepted, scan.summary()
    train = {line for line in (REPO / study.config["data"]["train_file"]).read_text().splitlines()}
    assert len(train) >= 300
    from autopilot.train.tasks.causal_lm import TrainConfig
    TrainConfig.from_hparams(study.config["baseline"])  # every baseline key is a field of the task's config


@pytest.mark.parametrize("change, message", [
    ({"model": None}, "`model`: missing"),
    ({"data": {"val_file": "v.jsonl", "spec": "chat_sft_v1"}}, "`data.train_file`: missing"),
    ({"data": {"source": "queue", "spec": "chat_sft_v1"}}, "`data.val_file`: missing"),
    ({"data": {"source": "file", "train_file": "t.jsonl", "val_file": "v.jsonl", "spec": "alpaca"}}, "alpaca"),
])
def test_a_causal_lm_study_must_name_its_model_and_data(change, message):
    raw = yaml.safe_load(EXAMPLE.read_text())
    for key, value in change.items():
        raw.pop(key) if value is None else raw.__setitem__(key, value)
    with pytest.raises(ConfigError, match=message):
        check_config(raw, "study")


def test_only_causal_lm_trains_on_the_queue():
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    raw["data"] = {"source": "queue"}
    with pytest.raises(ConfigError, match="causal_lm"):
        check_config(raw, "study")


def proposal(run_id: str) -> dict:
    return {"run_id": run_id, "overrides": {}}


def test_the_guard_passes_the_model_folder_and_the_data_block(tmp_path):
    study = Study(Project(tmp_path), check_config(example_config(), "study"))
    config = guard.build_config(study, proposal("00001"))
    schemas.validate(config, "config_json")
    assert config["init_model"] == "models/tiny-lm"
    assert config["data"]["train_file"] == "examples/data/chat_sft_small.jsonl"
    assert config["data"]["spec"] == "chat_sft_v1" and config["task"] == "causal_lm"
    assert config["causal_lm"] == {"precision": "auto", "attention": "auto", "compile": "auto", "adamw": "fused",
                                   "activation_checkpointing": False}  # the study's section, for every run
    bf16 = example_config(causal_lm={"precision": "bf16_pure"})
    assert guard.build_config(Study(Project(tmp_path), check_config(bf16, "study")),
                              proposal("00001"))["causal_lm"]["precision"] == "bf16_pure"
    with pytest.raises(ConfigError, match="causal_lm.compile.*not allowed"):
        check_config(example_config(causal_lm={"compile": "yes"}), "study")


# ---------------------------------------------------------------- data.source: queue

def queue_files(root: Path, names_priorities: list[tuple[str, str]]) -> None:
    project = Project(root)
    settings = Settings.from_config({"default_spec": "chat_sft_v1", "settle_seconds": 0}, root)
    for i, (name, priority) in enumerate(names_priorities):
        path = write_jsonl(root / "drops" / f"{name}.jsonl", TRAIN_CHATS[i * 4:(i + 1) * 4])
        outcome, _ = add_file(project, path, settings, priority=priority)
        assert outcome.status == "accepted"


def queue_study(root: Path) -> Study:
    data = {"source": "queue", "val_file": "data/val.jsonl", "spec": "chat_sft_v1"}
    return Study(Project(root), check_config(example_config(data=data), "study"))


def test_runs_claim_the_head_of_the_queue_and_release_it_after(tmp_path):
    root = tmp_path
    queue_files(root, [("first", "normal"), ("urgent", "high"), ("second", "normal")])
    study = queue_study(root)
    project = study.project
    run1, run2 = study.paths.run("00001"), study.paths.run("00002")
    claims.claim_for_run(project, run1)  # propose claims the run's dataset
    claims.claim_for_run(project, run2)
    one = guard.build_config(study, proposal("00001"))["data"]
    two = guard.build_config(study, proposal("00002"))["data"]
    assert Path(one["train_file"]).parent == Path("queue/processing") and one["train_file"].endswith("urgent.jsonl")
    assert two["train_file"].endswith("first.jsonl") and two["train_spec"] == "chat_sft_v1"
    claims.claim_for_run(project, run1)  # proposing the same run again claims nothing new
    assert guard.build_config(study, proposal("00001"))["data"] == one
    assert [p.name.split("-", 2)[2] for p in queue.entries(project.processing)] == ["first.jsonl", "urgent.jsonl"]

    completed, failed = {"status": "completed"}, {"status": "failed"}
    done = claims.release_after_run(project, run1, [completed, failed])
    assert done.parent == project.done  # the first seed completed: trained on
    back = claims.release_after_run(project, run2, [failed])
    assert back.parent == project.queue_dir("normal")  # not trained: back in line, at its old place
    assert [p.name.split("-", 2)[2] for p in queue.entries(project.queue_dir("normal"))] == ["first.jsonl",
                                                                                             "second.jsonl"]
    assert claims.release_after_run(project, run1, [completed]) == done  # once only
    assert claims.release_after_run(project, study.paths.run("00003"), [completed]) is None  # no claim
    claim = fsio.read_json(run1.data_claim)
    assert claim["spec"] == "chat_sft_v1" and claim["released"].startswith("queue/done/")


def test_an_empty_queue_halts_the_loop(tmp_path):
    study = queue_study(tmp_path)
    with pytest.raises(LoopHalted, match="queue is empty"):
        claims.claim_for_run(study.project, study.paths.run("00001"))
    with pytest.raises(GuardRejected, match="data_claim.json is missing"):
        guard.build_config(study, proposal("00001"))


# ---------------------------------------------------------------- end to end

@pytest.mark.slow
def test_a_queue_driven_lm_study_runs_end_to_end(tmp_path, tiny_model_dir):
    """Snakemake: propose, guard (claims the queued file), train the tiny model, judge, journal; the file is
    in queue/done/ afterwards and the run's config.json names it."""
    root = make_project(tmp_path / "p")
    shutil.copytree(tiny_model_dir, root / "models" / "tiny-lm")
    write_jsonl(root / "data" / "val.jsonl", VAL_CHATS)
    queue_files(root, [("chats", "normal")])
    config = example_config(data={"source": "queue", "val_file": "data/val.jsonl", "spec": "chat_sft_v1"},
                            iterations=1)
    (root / "config" / "lm.yaml").write_text(yaml.safe_dump(config))
    snakemake(root, "--configfile", "config/lm.yaml")
    run = root / "runs" / "lm_sft" / "00001"
    summary = fsio.read_json(run / "trainer_summary.json")
    assert summary["status"] == "completed" and summary["metric"]["name"] == "val_loss"
    assert len(summary["per_example"]["values"]) == len(VAL_CHATS)
    assert fsio.read_json(run / "verdict.json")["verdict"] == "baseline"
    trained_on = fsio.read_json(run / "config.json")["data"]["train_file"]
    assert trained_on.startswith("queue/processing/") and trained_on.endswith("chats.jsonl")
    assert [p.name for p in queue.entries(Project(root).done)] == [Path(trained_on).name]
    assert queue.entries(Project(root).processing) == []


@pytest.mark.slow
def test_the_example_study_runs_from_the_readme_steps(tmp_path):
    """README, "Fine-tuning a language model": build the tiny model, then run the study file (one run of a few
    steps, with one extra seed instead of two, to keep the test short)."""
    root = make_project(tmp_path / "p")
    build = subprocess.run([sys.executable, "examples/make_tiny_lm.py"], cwd=root, env=env(), capture_output=True,
                           text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    study = yaml.safe_load((root / "config" / "studies" / "lm_sft.yaml").read_text())
    study |= {"iterations": 1, "judge": {**study["judge"], "noise_seeds": 1},
              "baseline": {**study["baseline"], **FAST_BASELINE}}
    (root / "config" / "studies" / "lm_sft.yaml").write_text(yaml.safe_dump(study))
    snakemake(root, "--configfile", "config/studies/lm_sft.yaml")
    run = root / "runs" / "lm_sft" / "00001"
    assert fsio.read_json(run / "verdict.json")["verdict"] == "baseline"
    summary = fsio.read_json(run / "trainer_summary.json")
    assert summary["status"] == "completed" and summary["metric"]["name"] == "val_loss"
    readme = (REPO / "README.md").read_text()
    steps = readme[readme.index("## Fine-tuning a language model"):readme.index("## Dropping datasets")]
    for step in ("pip install -e '.[lm]'", "examples/make_tiny_lm.py", "--configfile config/studies/lm_sft.yaml"):
        assert step in steps
