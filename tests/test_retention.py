"""Retention across runs: whatever the order of runs, promotions and rollbacks, the champion's weights and the
rollback target stay, and nothing but checkpoint folders is ever removed."""

from __future__ import annotations

import random
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from registry_study import STUDY, add_run, load_study, make_registry_project, tree_digest

from autopilot import fsio, ledger
from autopilot.errors import AutopilotError
from autopilot.paths import RunPaths, format_run_id
from autopilot.registry import champion, retention, store

EVENTS = st.lists(st.one_of(
    st.tuples(st.just("run"), st.sampled_from(["improved", "inconclusive", "failed"])),
    st.tuples(st.just("promote"), st.integers(0, 30)),
    st.tuples(st.just("rollback"), st.none()),
    st.tuples(st.just("rollback_to"), st.integers(0, 30)),
), min_size=1, max_size=14)


def project_without_test(root, keep_champions, keep_last):
    """A registry study with no test command: nothing spawns a process, so many orders of events fit a test."""
    make_registry_project(root, with_test=False,
                          retention={"keep_champions": keep_champions, "keep_last_runs": keep_last})
    return load_study(root)


def pending_run(root):
    """A run still training (no verdict, not journaled): retention must not touch it."""
    run = RunPaths(root / "runs" / STUDY / "00999")
    step = run.checkpoint / "step-00000002"
    step.mkdir(parents=True)
    (step / "meta.json").write_text("{}")
    (step / "state.pt").write_bytes(b"half-trained")
    return run


def apply_event(study, root, kind, arg, rng):
    history = ledger.read_history(study.paths)
    ids = [e["run_id"] for e in history]
    if kind == "run":
        run_id = format_run_id(len(ids) + 1)
        promoted = any(e["verdict"] in ledger.PROMOTING_VERDICTS for e in history)
        verdict = arg if promoted or arg == "failed" else "baseline"
        add_run(root, run_id, verdict, None if arg == "failed" else rng.uniform(0.5, 0.9), seeds=rng.randint(1, 2))
        champion.settle(study)
    elif not ids:
        return
    elif kind == "promote":
        champion.promote(study, ids[arg % len(ids)], reason="a property test", force=True, by="hypothesis@test")
    elif kind == "rollback":
        champion.rollback(study, reason="a property test", by="hypothesis@test")
    else:
        champion.rollback(study, reason="a property test", to=ids[arg % len(ids)], by="hypothesis@test")


def check_invariants(study, root, pending: RunPaths, pending_files: dict):
    models = study.models
    events = ledger.champion_events(models)
    current = store.current_run(models)
    if current is not None:
        record = store.read_champion(models.champion(current))
        assert record is not None, "the champion's folder is gone"
        if record["weights"]["format"] != "none":
            assert (models.current / "model" / "weights.bin").exists(), "the champion's weights are gone"
    before = store.previous_champion(events)
    if before is not None:
        assert store.read_champion(models.champion(before)) is not None, f"the rollback target {before} is gone"
    for e in ledger.read_history(study.paths):
        run = study.paths.run(e["run_id"])
        for name in ("trainer_summary.json", "verdict.json", "metrics.jsonl", "config.json"):
            assert (run.dir / name).exists(), f"retention removed {run.id}/{name}"
    assert tree_digest(pending.dir) == pending_files, "retention touched a run that is not journaled"
    keep_last = study.config["retention"]["keep_last_runs"]
    if keep_last is not None:
        journaled = sorted(e["run_id"] for e in ledger.read_history(study.paths))
        with_checkpoints = {r for r in journaled if retention.checkpoint_dirs(study.paths.run(r))}
        assert with_checkpoints <= set(journaled[-keep_last:])
        for r in with_checkpoints:
            for folder in retention.checkpoint_dirs(study.paths.run(r)):
                assert [p.name for p in folder.iterdir()] == ["step-00000003"], "more than the final checkpoint"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=EVENTS, keep_champions=st.integers(1, 3), keep_last=st.one_of(st.none(), st.integers(1, 3)),
       seed=st.integers(0, 2**16))
def test_retention_never_deletes_the_champion_or_the_rollback_target(tmp_path_factory, events, keep_champions,
                                                                      keep_last, seed):
    root = tmp_path_factory.mktemp("retention") / "project"
    study = project_without_test(root, keep_champions, keep_last)
    pending = pending_run(root)
    pending_files = tree_digest(pending.dir)
    rng = random.Random(seed)
    for kind, arg in events:
        try:
            apply_event(study, root, kind, arg, rng)
        except AutopilotError:
            pass  # refused (no earlier champion, no metric, no weights left...): nothing may have changed for it
        check_invariants(study, root, pending, pending_files)


def test_retention_keeps_the_last_runs_final_checkpoints_and_logs_what_it_freed(tmp_path):
    root = tmp_path / "project"
    study = project_without_test(root, keep_champions=1, keep_last=2)
    for i, verdict in enumerate(["baseline", "inconclusive", "inconclusive", "inconclusive"], 1):
        add_run(root, format_run_id(i), verdict, 0.8 - 0.01 * i, seeds=2)
        champion.settle(study)
    runs = {r: retention.checkpoint_dirs(study.paths.run(r)) for r in ("00001", "00002", "00003", "00004")}
    assert not runs["00001"] and not runs["00002"]
    assert all(len(runs[r]) == 2 for r in ("00003", "00004"))
    log = list(fsio.iter_jsonl(study.paths.retention_log))
    first = next(line for line in log if line["run_id"] == "00001")
    assert first["kept"] == "final" and first["checkpoint_bytes"] > first["freed_bytes"] > 0
    assert any(line["run_id"] == "00001" and line["kept"] == "none" for line in log)
    # the champion's weights live in models/: its run's checkpoints could go, the champion could not
    assert (study.models.current / "model" / "weights.bin").exists() and store.current_run(study.models) == "00001"
    with pytest.raises(AutopilotError, match="retention removed its checkpoints"):
        champion.promote(study, "00002", reason="too late", force=True)


def test_keep_last_runs_null_keeps_every_checkpoint(tmp_path):
    root = tmp_path / "project"
    study = project_without_test(root, keep_champions=1, keep_last=None)
    for i in range(1, 4):
        add_run(root, format_run_id(i), "baseline" if i == 1 else "inconclusive", 0.7)
        champion.settle(study)
    assert all(len(list(study.paths.run(format_run_id(i)).checkpoint.iterdir())) == 2 for i in range(1, 4))


def test_a_trainers_own_checkpoint_layout_is_kept_whole_while_its_run_is_recent(tmp_path):
    root = tmp_path / "project"
    study = project_without_test(root, keep_champions=1, keep_last=1)
    run = add_run(root, "00001", "baseline", 0.8)
    for step in run.checkpoint.iterdir():
        shutil.rmtree(step)
    (run.checkpoint / "w.npy").write_bytes(b"weights of a user trainer")  # no step-N folders
    champion.settle(study)
    assert (run.checkpoint / "w.npy").exists()
    add_run(root, "00002", "inconclusive", 0.7)
    champion.settle(study)
    assert not run.checkpoint.exists()  # out of the last run: its checkpoint folder goes, the rest stays
    assert (run.dir / "trainer_summary.json").exists()
