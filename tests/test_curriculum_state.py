"""The curriculum's state (runs/<study>/curriculum.json): advancing at 80% over the last 3 evaluations, never
skipping a level, forgetting shown, restarts; and the batches it generates into the inbox when the queue runs low."""

from __future__ import annotations

import json
import subprocess
import sys

from continual_helpers import continual_config
from helpers import env

from autopilot import fsio
from autopilot.continual import start
from autopilot.curriculum import SKILLS, batches, held_out, state
from autopilot.curriculum.state import Score
from autopilot.ingest import queue
from autopilot.paths import Project
from autopilot.study import Study, check_config


def curriculum_study(root, **curriculum) -> Study:
    config = continual_config(curriculum={"enabled": True, "skills": ["binary", "syllo"], "batch_size": 40,
                                          "eval_size": 10, **curriculum})
    study = Study(Project(root), check_config(config, "test"))
    study.freeze()
    return study


def record(study: Study, run_id: str, **levels: float) -> dict:
    """One run's evaluation of binary: `L1=0.9` is 9 of level 1's 10 held-out problems right."""
    scores = [Score("binary", int(k[1:]), round(acc * 10), 10) for k, acc in levels.items()]
    return state.record_run(study, run_id, model=run_id, scores=scores)


def level(study: Study, skill: str = "binary") -> int:
    return state.load(study)["skills"][skill]["level"]


def test_a_skill_advances_when_its_last_three_evaluations_average_at_least_80_percent(tmp_path):
    study = curriculum_study(tmp_path)
    assert level(study) == 1 and level(study, "syllo") == 1
    for run_id, acc in [("00001", 0.9), ("00002", 0.7), ("00003", 0.7), ("00004", 0.9)]:
        record(study, run_id, L1=acc)
        assert level(study) == 1  # fewer than three, or a mean of 0.77 over the last three
    record(study, "00005", L1=1.0)  # (0.7 + 0.9 + 1.0) / 3 = 0.87
    entry = state.load(study)["skills"]["binary"]
    assert entry["level"] == 2 and entry["mastered"] == {"1": 0.866667}
    assert entry["advances"][0] | {"at": None} == {"from": 1, "to": 2, "run_id": "00005",
                                                   "accuracies": [0.7, 0.9, 1.0], "at": None}
    assert level(study, "syllo") == 1  # another skill keeps its own level
    assert "## Curriculum: binary advances to level 2" in study.paths.labbook.read_text()


def test_exactly_80_percent_is_enough_and_the_window_and_threshold_are_settings(tmp_path):
    study = curriculum_study(tmp_path)
    for k in range(3):
        record(study, f"0000{k + 1}", L1=0.8)
    assert level(study) == 2
    quick = curriculum_study(tmp_path / "quick", window=1, advance_at=0.5)
    record(quick, "00001", L1=0.5)
    assert level(quick) == 2


def test_levels_are_never_skipped(tmp_path):
    study = curriculum_study(tmp_path)
    for k in range(1, 4):
        record(study, f"0000{k}", L1=1.0, L2=1.0, L3=1.0)  # a model that already knows the levels above
    assert level(study) == 2  # one level up, and level 2 needs three evaluations of its own
    record(study, "00004", L1=1.0, L2=1.0)
    record(study, "00005", L1=1.0, L2=1.0)
    assert level(study) == 2
    record(study, "00006", L1=1.0, L2=1.0)
    assert level(study) == 3
    evaluations = state.load(study)["skills"]["binary"]["evaluations"]
    assert [e["level"] for e in evaluations] == [1, 1, 1, 2, 2, 2]


def test_a_run_is_recorded_once(tmp_path):
    study = curriculum_study(tmp_path)
    record(study, "00001", L1=0.9)
    record(study, "00001", L1=0.9)  # the judge step run again after a kill
    assert len(state.load(study)["skills"]["binary"]["evaluations"]) == 1
    assert state.load(study)["runs"] == ["00001"]


def test_forgetting_an_earlier_level_is_detected_shown_and_replayed(tmp_path):
    study = curriculum_study(tmp_path, replay_share=0.5)
    for k in range(1, 4):
        record(study, f"0000{k}", L1=0.9)
    record(study, "00004", L1=0.5, L2=0.2)  # level 2 now; level 1 slipped below 80%
    entry = state.load(study)["skills"]["binary"]
    assert entry["forgotten"] == [{"level": 1, "accuracy": 0.5, "mastered": 0.9, "run_id": "00004"}]
    labbook = study.paths.labbook.read_text()
    assert "## Curriculum: binary forgets level 1" in labbook and "mastered at 90%" in labbook
    row = state.summary(study)["binary"]
    assert "FORGETS level 1 (0.50)" in state.describe(row) and row["level"] == 2
    plan = batches.plan(entry, "binary")
    assert plan.level == 2 and plan.replay == (1,)  # replay draws from the forgotten level
    record(study, "00005", L1=0.9, L2=0.3)
    assert state.load(study)["skills"]["binary"]["forgotten"] == []
    assert "## Curriculum: binary regains level 1" in study.paths.labbook.read_text()


def test_a_restarted_process_resumes_at_the_same_levels_and_window(tmp_path):
    study = curriculum_study(tmp_path)
    for k in range(1, 4):
        record(study, f"0000{k}", L1=1.0)
    record(study, "00004", L1=1.0, L2=0.9)
    record(study, "00005", L1=1.0, L2=0.9)
    code = ("import json; from autopilot.paths import Project; from autopilot.study import Study; "
            "from autopilot.curriculum import state; from autopilot.curriculum.state import Score; "
            f"from pathlib import Path; s = Study.from_study_dir(Project(Path({str(tmp_path)!r})), 'cont'); "
            "before = state.load(s)['skills']['binary']['level']; "
            "state.record_run(s, '00006', '00006', [Score('binary', 1, 10, 10), Score('binary', 2, 8, 10)]); "
            "print(json.dumps([before, state.load(s)['skills']['binary']['level']]))")
    out = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [2, 3]  # level 2 read back; the window held the two evaluations before


def test_the_queue_is_topped_up_with_a_batch_per_skill_that_ingest_accepts(tmp_path):
    study = curriculum_study(tmp_path, replay_share=0.25)
    project = study.project
    assert [o.status for o in batches.top_up(study)] == ["accepted", "accepted"]
    waiting = queue.entries(project.queue_dir("low"))
    assert sorted(p.name.split("-", 2)[2] for p in waiting) == ["cont-binary-L01-b00001.jsonl",
                                                                "cont-syllo-L01-b00001.jsonl"]
    assert batches.top_up(study) == []  # two wait: min_queue (2) is met
    assert list(project.inbox.glob("*.jsonl")) == []  # taken from the inbox by ingest
    report = fsio.read_json(queue.companion(waiting[0], queue.REPORT_SUFFIX))
    assert report["spec"] == "completion_v1" and report["counts"]["records"] == 40 and "curriculum batch 1" in \
        report["meta"]["note"]
    held = held_out.keys(study, "binary", 1)
    assert len(held) == 10 and not held & {SKILLS["binary"].key(r) for r in fsio.iter_jsonl(waiting[0])}
    assert state.load(study)["skills"]["binary"]["batches"] == 1


def test_a_batch_above_level_one_replays_the_levels_below_but_never_their_held_out_problems(tmp_path):
    study = curriculum_study(tmp_path, replay_share=0.25, skills=["binary"])
    with state.changing(study) as st:
        st["skills"]["binary"]["level"] = 3
    records = batches.compose(study, batches.plan(state.load(study)["skills"]["binary"], "binary"))
    levels = [int(r["id"].split("-")[1][1:]) for r in records]
    assert len(records) == 40 and levels.count(3) == 30 and levels.count(1) == 5 and levels.count(2) == 5
    for k in (1, 2, 3):
        assert not held_out.keys(study, "binary", k) & {r["prompt"] for r in records if f"-L{k}-" in r["id"]}


def test_held_out_sets_are_written_once_and_each_run_is_measured_on_every_level_reached(tmp_path):
    study = curriculum_study(tmp_path, skills=["binary"])
    path = study.paths.held_out("binary", 1)
    held_out.ensure(study, "binary", 1)
    first = path.read_bytes()
    held_out.ensure(study, "binary", 1)
    assert path.read_bytes() == first and len(first.splitlines()) == 10
    with state.changing(study) as st:
        st["skills"]["binary"]["level"] = 2
    sets = start.eval_sets(study, start.curriculum_levels(study))
    assert [(s["name"], s.get("level")) for s in sets] == [("val", None), ("binary@L1", 1), ("binary@L2", 2)]
    assert sets[2]["file"] == "runs/cont/curriculum/binary/level-02.eval.jsonl" and sets[2]["spec"] == "completion_v1"
