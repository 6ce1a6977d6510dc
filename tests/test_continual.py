"""Continual mode: its settings, what becomes of a run's dataset by the verdict, and a study of three queued files
through Snakemake (two train the champion further in order, a harmful one is quarantined)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from continual_helpers import (
    STUDY,
    build_binary_model,
    completions,
    continual_config,
    level_one_problems,
    shuffled_answers,
    write_jsonl,
)
from helpers import make_project, snakemake

from autopilot import fsio
from autopilot.cli import main
from autopilot.continual import datasets
from autopilot.errors import ConfigError
from autopilot.ingest import claims, queue
from autopilot.ingest.checks import Settings
from autopilot.ingest.inbox import add_file
from autopilot.paths import Project
from autopilot.study import Study, check_config


@pytest.mark.parametrize(("change", "message"), [
    ({"data": {"source": "file", "train_file": "t.jsonl", "val_file": "v.jsonl", "spec": "completion_v1"}},
     "`data.source`: mode `continual` needs `data.source: queue`"),
    ({"generation_size": 2}, "needs `generation_size: 1`"),
    ({"registry": {"lora": "adapter"}}, "needs `registry.lora: merge`"),
    ({"continual": {"eval_sets": [{"name": "val", "file": "x.jsonl", "spec": "chat_sft_v1"}]}}, "not `val`"),
    ({"mode": "search", "curriculum": {"enabled": True}}, "`curriculum.enabled`: the curriculum feeds a continual"),
])
def test_a_continual_study_says_what_it_needs(change, message):
    with pytest.raises(ConfigError, match=message):
        check_config(continual_config(**change), "study")


def test_continual_settings_parse_with_their_defaults():
    s = Study(Project(Path(".")), check_config(continual_config(
        continual={"eval_sets": [{"name": "skill", "file": "s.jsonl", "spec": "syllo_v1", "max_loss_rise": 0.3}]}),
        "study")).settings
    assert s.is_continual and s.continual.max_loss_rise == 0.15 and s.continual.alpha == 0.05
    assert s.continual.eval_sets[0].name == "skill" and s.continual.eval_sets[0].max_loss_rise == 0.3
    assert not s.curriculum.enabled and s.curriculum.min_queue == 2 and s.curriculum.advance_at == 0.8
    assert s.curriculum.window == 3 and s.curriculum.skills == ("binary", "syllo")


# ---------------------------------------------------------------- the dataset's outcome

def claimed(root: Path, name: str, run_id: str):
    """A queued file claimed by run `run_id` of a continual study."""
    project = Project(root)
    path = write_jsonl(root / "drops" / f"{name}.jsonl", completions(level_one_problems()[:5]))
    outcome, _ = add_file(project, path, Settings.from_config({"default_spec": "completion_v1"}, root))
    assert outcome.status == "accepted"
    study = Study(project, check_config(continual_config(), "study"))
    run = study.paths.run(run_id)
    run.dir.mkdir(parents=True)
    claims.claim_for_run(project, run)
    return study, run


@pytest.mark.parametrize(("verdict", "folder", "record"), [
    ("improved", "done", queue.OUTCOME_SUFFIX), ("inconclusive", "done", queue.OUTCOME_SUFFIX),
    ("regressed", "quarantine", queue.EVIDENCE_SUFFIX), ("failed", "normal", None), ("skipped", "normal", None)])
def test_the_dataset_goes_where_the_verdict_says_with_its_record(tmp_path, verdict, folder, record):
    study, run = claimed(tmp_path, "chats", "00001")
    evidence = {"reason": "made up", "sets": [{"name": "val", "loss_rise": 0.4}]}
    data = datasets.settle(study, run, verdict, evidence)
    moved = [p for p in queue.entries(tmp_path / "queue" / folder)]
    assert len(moved) == 1 and queue.entries(study.project.processing) == []
    assert data["now_at"] == str(moved[0].relative_to(tmp_path)) and data["records"] == 5
    if record is None:
        assert data["outcome"] == "requeued"
        return
    written = fsio.read_json(queue.companion(moved[0], record))
    assert written["run_id"] == "00001" and written["verdict"] == verdict and written["sets"] == evidence["sets"]
    if verdict == "inconclusive":
        assert written["effect"].startswith("no effect") and data["outcome"] == "done"
    assert datasets.settle(study, run, verdict, evidence) == data  # the judge run again: nothing moves twice


def test_a_judge_killed_after_the_move_completes_the_release(tmp_path):
    study, run = claimed(tmp_path, "chats", "00001")
    entry = tmp_path / fsio.read_json(run.data_claim)["entry"]
    queue.quarantine(study.project, entry)  # moved, then killed before the evidence and the claim
    data = datasets.settle(study, run, "regressed", {"reason": "loss rose"})
    assert data["outcome"] == "quarantined"
    assert queue.companion(tmp_path / data["now_at"], queue.EVIDENCE_SUFFIX).exists()


def test_queue_retry_brings_a_quarantined_dataset_back_into_its_queue(tmp_path):
    make_project(tmp_path)
    study, run = claimed(tmp_path, "chats", "00001")
    datasets.settle(study, run, "regressed", {"reason": "loss rose"})
    name = queue.entries(study.project.quarantine)[0].name
    listed = CliRunner().invoke(main, ["--root", str(tmp_path), "queue", "list"])
    assert f"quarantine {name}" in listed.output and "loss rose" in listed.output
    result = CliRunner().invoke(main, ["--root", str(tmp_path), "queue", "retry", name])
    assert result.exit_code == 0, result.output
    assert [p.name for p in queue.entries(study.project.queue_dir("normal"))] == [name]
    assert queue.companion(study.project.queue_dir("normal") / name, queue.REPORT_SUFFIX).exists()
    assert (study.project.quarantine_retried / name.replace(".jsonl", queue.EVIDENCE_SUFFIX)).exists()
    assert queue.counts(study.project)["quarantine"] == 0


# ---------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def binary_model_dir(tmp_path_factory) -> Path:
    return build_binary_model(tmp_path_factory.mktemp("lm") / "tiny-lm")


def drop(root: Path, name: str, records: list[dict], mtime: int) -> None:
    """inbox/<name>.jsonl with its sidecar, long settled, in the order of `mtime` (ingest takes the oldest first)."""
    import os

    for path in (root / "inbox" / f"{name}.meta.yaml", root / "inbox" / f"{name}.jsonl"):
        if path.suffix == ".yaml":
            path.write_text("spec: completion_v1\n")
        else:
            write_jsonl(path, records)
        os.utime(path, (mtime, mtime))


def safetensors(folder: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow
def test_queued_files_train_the_champion_in_order_and_a_harmful_one_is_quarantined(tmp_path, binary_model_dir):
    """Three files through Snakemake in one invocation: a and b (b replays a's problems and adds new ones) each
    train the champion further and are promoted; c, b's problems with their answers shuffled, is regressed and
    quarantined with the evidence. The study's sets sample the same 155 problems of binary level 1."""
    problems = level_one_problems()
    first, second = problems[:60], problems[60:120]
    root = make_project(tmp_path / "p", **continual_config(
        iterations=3, continual={"eval_sets": [{"name": "second", "file": "data/second.jsonl",
                                                "spec": "completion_v1"}]}))
    shutil.copytree(binary_model_dir, root / "models" / "tiny-lm")
    import random
    write_jsonl(root / "data" / "val.jsonl", completions(random.Random(2).sample(first + second, 32)))
    write_jsonl(root / "data" / "second.jsonl", completions(second[:24]))
    drop(root, "a", completions(first), 1_000_000)
    drop(root, "b", completions(first + second), 1_000_100)
    drop(root, "c", completions(shuffled_answers(first + second)), 1_000_200)
    snakemake(root)

    runs = root / "runs" / STUDY
    verdicts = [fsio.read_json(runs / f"0000{k}" / "verdict.json") for k in (1, 2, 3)]
    configs = [fsio.read_json(runs / f"0000{k}" / "config.json") for k in (1, 2, 3)]
    assert [v["verdict"] for v in verdicts] == ["improved", "improved", "regressed"], [v["reason"] for v in verdicts]
    # in order, each from the champion the run before left
    assert [Path(c["data"]["train_file"]).name.split("-", 2)[2] for c in configs] == ["a.jsonl", "b.jsonl", "c.jsonl"]
    assert [c["champion"] for c in configs] == [None, "00001", "00002"]
    proposals = [fsio.read_json(runs / f"0000{k}" / "proposal.json") for k in (1, 2, 3)]
    assert [p["policy"] for p in proposals] == ["baseline", "tpe", "tpe"]  # configs are still searched
    assert all(c["hparams"]["lr"] == p["overrides"]["lr"] for c, p in zip(configs[1:], proposals[1:], strict=True))
    assert [c["init_model"] for c in configs] == ["models/tiny-lm", f"models/{STUDY}/00001/model",
                                                  f"models/{STUDY}/00002/model"]
    assert [s["name"] for s in configs[0]["data"]["eval_sets"]] == ["val", "second"]
    # cumulative: run 2 measured, as its champion, exactly the weights run 1 trained
    summaries = [fsio.read_json(runs / f"0000{k}" / "trainer_summary.json") for k in (1, 2)]
    for name in ("val", "second"):
        trained = summaries[0]["eval_sets"][name]["challenger"]["per_example"]["val_loss"]
        started = summaries[1]["eval_sets"][name]["champion"]["per_example"]["val_loss"]
        assert started == pytest.approx(trained, abs=1e-5)
        assert verdicts[1]["continual"]["sets"][[s["name"] for s in verdicts[1]["continual"]["sets"]].index(name)][
            "loss"]["champion"] == pytest.approx(verdicts[0]["value"] if name == "val" else
                                                 verdicts[0]["continual"]["sets"][1]["loss"]["challenger"], abs=1e-5)
    champions = root / "models" / STUDY
    base = safetensors(root / "models" / "tiny-lm")
    one, two = safetensors(champions / "00001" / "model"), safetensors(champions / "00002" / "model")
    assert safetensors(root / summaries[0]["checkpoint"] / "model").keys() == one.keys()
    for key in one:
        assert (one[key] == safetensors(root / summaries[0]["checkpoint"] / "model")[key]).all()  # exported as trained
    moved = [key for key in one if not (one[key] == base[key]).all()]
    assert moved and any(not (two[k] == one[k]).all() for k in moved)  # base -> 1 -> 2, each step changed them

    # the champion stays 00002; c is quarantined with the per-set deltas, a and b are done with their run
    assert (root / "models" / STUDY / "current").resolve().name == "00002"
    project = Project(root)
    done = {p.name.split("-", 2)[2]: p for p in queue.entries(project.done)}
    assert sorted(done) == ["a.jsonl", "b.jsonl"]
    assert fsio.read_json(queue.companion(done["b.jsonl"], queue.OUTCOME_SUFFIX))["run_id"] == "00002"
    [quarantined] = queue.entries(project.quarantine)
    evidence = fsio.read_json(queue.companion(quarantined, queue.EVIDENCE_SUFFIX))
    assert quarantined.name.endswith("c.jsonl") and evidence["run_id"] == "00003" and evidence["champion"] == "00002"
    assert any(s["regressed"] for s in evidence["sets"])
    assert evidence["reason"] == verdicts[2]["reason"].split("; trained")[0]
    assert verdicts[2]["continual"]["data"]["outcome"] == "quarantined"
    labbook = (runs / "labbook.md").read_text()
    assert "queue/quarantine/" in labbook and "from champion run 00002" in labbook

    # status and the report show the data each champion was trained on, in order
    status = CliRunner().invoke(main, ["--root", str(root), "status", "--study", STUDY, "--json"])
    lineage = json.loads(status.output)["continual"]["lineage"]
    assert [(s["run_id"], Path(s["data"]["source"]).name) for s in lineage] == [("00001", "a.jsonl"),
                                                                                 ("00002", "b.jsonl")]
    text = CliRunner().invoke(main, ["--root", str(root), "status", "--study", STUDY], env={"COLUMNS": "200"})
    assert "models/tiny-lm -> 00001 (a.jsonl, 60 records) -> 00002 (b.jsonl, 120 records)" in text.output
    report = CliRunner().invoke(main, ["--root", str(root), "report", "--study", STUDY])
    assert report.exit_code == 0, report.output
    page = (runs / "report.html").read_text()
    assert page.index('<li data-run="00001">') < page.index('<li data-run="00002">') and "quarantined" in page
