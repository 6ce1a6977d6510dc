"""The champion registry: promotion in the journal step, manual promotion, rollback, and what they record."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner
from registry_study import (
    STUDY,
    add_run,
    expected_test_score,
    load_study,
    make_registry_project,
    tree_digest,
    weights_bytes,
)

from autopilot import fsio, ledger, schemas
from autopilot.cli import main
from autopilot.errors import AutopilotError
from autopilot.registry import champion, store


@pytest.fixture
def root(tmp_path):
    return make_registry_project(tmp_path / "project")


def settle(root):
    study = load_study(root)
    return study, champion.settle(study)


def test_the_judges_promotion_exports_scores_once_and_points_current(root):
    add_run(root, "00001", "baseline", 0.80, seeds=2)
    study, event = settle(root)
    models = study.models
    assert event["event"] == "promotion" and event["by"] == "the judge" and event["previous"] is None
    assert store.current_run(models) == "00001" and (models.dir / "current").is_symlink()
    record = fsio.read_json(models.champion("00001").record)
    schemas.validate(record, "champion")
    # the best seed on validation (seed 1: 0.801) is the one exported, and its test score is the one measured
    assert record["weights"]["seed_index"] == 1 and record["weights"]["format"] == "files"
    assert (models.current / "model" / "weights.bin").read_bytes() == weights_bytes("00001", 1)
    assert record["test"]["metric"]["value"] == pytest.approx(expected_test_score(weights_bytes("00001", 1)))
    assert record["test"]["examples"] == 40 and record["test"]["split"] == "test"
    best = fsio.read_json(study.paths.best)
    assert best["run_id"] == "00001" and best["test"]["value"] == record["test"]["metric"]["value"]
    assert best["champion"] == f"models/{STUDY}/current"
    labbook = study.paths.labbook.read_text()
    assert "## Champion: run 00001 (promoted by the judge)" in labbook
    assert f"held-out test: val_accuracy = {record['test']['metric']['value']:.4f} on 40 test examples" in labbook
    scores = list(fsio.iter_jsonl(models.test_scores))
    assert [s["run_id"] for s in scores] == ["00001"]
    # settling again changes nothing: no second event, no second test evaluation
    before = tree_digest(models.dir)
    assert champion.settle(study) is None
    assert tree_digest(models.dir) == before


def test_a_later_improvement_is_promoted_and_rollback_restores_the_previous_weights_byte_for_byte(root):
    add_run(root, "00001", "baseline", 0.80)
    study, _ = settle(root)
    first = tree_digest(study.models.current)
    add_run(root, "00002", "improved", 0.85)
    _, event = settle(root)
    assert event["run_id"] == "00002" and event["previous"] == "00001"
    assert tree_digest(study.models.current) != first
    back = champion.rollback(study, reason="answers got worse in production", by="alice@lab")
    assert back["event"] == "rollback" and back["run_id"] == "00001" and back["previous"] == "00002"
    assert store.current_run(study.models) == "00001"
    assert tree_digest(study.models.current) == first  # weights, record and test summary, byte for byte
    # the rollback made run 00001 the study's incumbent: the judge and the policies compare against it
    history = ledger.read_history(study.paths)
    assert ledger.best_entry(history)["run_id"] == "00002"
    assert ledger.incumbent(history, ledger.champion_events(study.models))["run_id"] == "00001"
    assert fsio.read_json(study.paths.best)["run_id"] == "00001"
    assert "rolled back from run 00002 by alice@lab: answers got worse in production" in study.paths.labbook.read_text()
    assert champion.settle(study) is None  # the journal step does not undo a person's rollback
    # a run journaled after the rollback without promotion keeps it; the next promotion by the judge wins
    add_run(root, "00003", "inconclusive", 0.79)
    assert champion.settle(study) is None
    add_run(root, "00004", "improved", 0.86)
    assert champion.settle(study)["run_id"] == "00004"


def test_manual_promotion_needs_force_for_a_run_the_judge_did_not_promote(root):
    add_run(root, "00001", "baseline", 0.80)
    add_run(root, "00002", "inconclusive", 0.78)
    study, _ = settle(root)
    before = tree_digest(study.models.dir)
    with pytest.raises(AutopilotError, match="verdict inconclusive.*--force"):
        champion.promote(study, "00002", reason="our own eval likes it")
    assert tree_digest(study.models.dir) == before
    event = champion.promote(study, "00002", reason="our own eval likes it", force=True, by="bob@lab")
    assert event["forced"] and event["event"] == "manual_promotion" and event["verdict"] == "inconclusive"
    assert "promoted by bob@lab (forced: its verdict was `inconclusive`)" in study.paths.labbook.read_text()
    assert ledger.incumbent(ledger.read_history(study.paths), ledger.champion_events(study.models))["run_id"] == "00002"
    with pytest.raises(AutopilotError, match="champion already"):
        champion.promote(study, "00002", reason="again", force=True)


@pytest.mark.parametrize("run_id, error", [("00009", "not in the study's ledger"), ("00003", "has no metric")])
def test_manual_promotion_of_a_run_that_cannot_be_champion_is_refused(root, run_id, error):
    add_run(root, "00001", "baseline", 0.80)
    add_run(root, "00003", "failed", None)
    study, _ = settle(root)
    with pytest.raises(AutopilotError, match=error):
        champion.promote(study, run_id, reason="why not", force=True)


def test_rollback_without_an_earlier_champion_or_to_a_run_that_never_was_one_is_refused(root):
    add_run(root, "00001", "baseline", 0.80)
    study = load_study(root)
    with pytest.raises(AutopilotError, match="no champion yet"):
        champion.rollback(study, reason="nothing")
    champion.settle(study)
    with pytest.raises(AutopilotError, match="first champion"):
        champion.rollback(study, reason="nothing before")
    add_run(root, "00002", "inconclusive", 0.70)
    add_run(root, "00003", "improved", 0.90)
    champion.settle(study)
    with pytest.raises(AutopilotError, match="run 00002 was never a champion of study digits_cnn"):
        champion.rollback(study, reason="x", to="00002")
    assert champion.rollback(study, reason="x", to="00001")["run_id"] == "00001"
    # a second rollback returns to where the first one left (as `kubectl rollout undo` does)
    assert champion.rollback(study, reason="undo the undo")["run_id"] == "00003"


def test_a_run_without_weights_or_with_a_broken_test_is_still_champion_and_the_records_say_why(root):
    run = add_run(root, "00001", "baseline", 0.80, hparams={"fail_test": True})
    study, event = settle(root)
    record = store.read_champion(study.models.champion("00001"))
    assert record["test"]["status"] == "failed" and "broke on purpose" in (
        study.models.champion("00001").test_log.read_text())
    assert record["test"]["metric"]["value"] is None
    assert "held-out test evaluation failed" in study.paths.labbook.read_text()
    # a run whose checkpoint is gone: the champion record says so, and nothing raises
    add_run(root, "00002", "improved", 0.85)
    shutil.rmtree(run.dir.parent / "00002" / "checkpoint")
    settle(root)
    record = store.read_champion(study.models.champion("00002"))
    assert record["weights"]["format"] == "none" and "final checkpoint" in record["weights"]["error"]
    assert "- no weights:" in study.paths.labbook.read_text()


def test_history_lines_are_valid_and_never_hold_a_test_score(root):
    add_run(root, "00001", "baseline", 0.80)
    settle(root)
    add_run(root, "00002", "improved", 0.85)
    study, _ = settle(root)
    champion.rollback(study, reason="test", by="carol@lab")
    lines = [json.loads(x) for x in study.models.history.read_text().splitlines()]
    for line in lines:
        schemas.validate(line, "registry_event")
    scores = [s["metric"]["value"] for s in store.held_out_scores(study.models).values()]
    text = study.models.history.read_text()
    assert scores and not any(repr(v)[:8] in text for v in scores)


def test_the_models_commands_list_show_promote_and_roll_back_with_clear_errors(root):
    add_run(root, "00001", "baseline", 0.80)
    settle(root)
    add_run(root, "00002", "inconclusive", 0.79)
    study, _ = settle(root)

    def run(*args):
        return CliRunner().invoke(main, ["--root", str(root), "models", *args])

    listed = run("list")
    assert listed.exit_code == 0 and "promotion        run 00001" in listed.output and "by the judge" in listed.output
    refused = run("promote", "00002", "--reason", "a hunch")
    assert refused.exit_code == 1 and "--force" in refused.output and "Traceback" not in refused.output
    assert run("promote", "00002").exit_code == 2  # --reason is required
    promoted = run("promote", "00002", "--reason", "a hunch", "--force")
    assert promoted.exit_code == 0 and "run 00002 is the champion (before: run 00001)" in promoted.output
    shown = run("show")
    assert shown.exit_code == 0 and "run 00002 (current champion)" in shown.output
    assert "held-out test: val_accuracy = " in shown.output and "weights: models/digits_cnn/00002/model" in shown.output
    as_json = json.loads(run("show", "00001", "--json").output)
    assert as_json["current"] is False and as_json["record"]["run_id"] == "00001"
    back = run("rollback", "--reason", "the hunch was wrong")
    assert back.exit_code == 0 and "rolled back from run 00002 to run 00001" in back.output
    lines = [json.loads(x) for x in run("list", "--json").output.splitlines()]
    assert [(r["event"], r["run_id"], r["current"]) for r in lines] == [
        ("promotion", "00001", False), ("manual_promotion", "00002", False), ("rollback", "00001", True)]
    assert lines[1]["forced"] and lines[2]["reason"] == "the hunch was wrong"
    assert run("show", "00009").exit_code == 1


def test_the_champion_step_of_the_workflow_records_what_it_did_in_registry_json(root):
    add_run(root, "00001", "baseline", 0.80, seeds=2)
    pending = add_run(root, "00002", "inconclusive", 0.7, journal=False)

    def step(run_id):
        return CliRunner().invoke(main, ["--root", str(root), "champion", "--run", run_id])

    first = step("00001")
    assert first.exit_code == 0 and "run 00001 is the champion now" in first.output
    record = fsio.read_json(root / "runs" / STUDY / "00001" / "registry.json")
    schemas.validate(record, "registry_step")
    assert record["event"]["event"] == "promotion" and record["champion"] == "00001"
    assert record["removed"] == 2 and record["freed_bytes"] > 0  # each seed's earlier checkpoint
    again = step("00001")
    assert again.exit_code == 0 and "the champion stays run 00001" in again.output
    assert fsio.read_json(root / "runs" / STUDY / "00001" / "registry.json")["event"] is None
    refused = step(pending.id)
    assert refused.exit_code == 1 and "not journaled yet" in refused.output
