"""The ledger (history.jsonl): every line checked on read, bad lines skipped and reported, and a storm of
SIGKILLs and power cuts during journal writes that leaves every study readable and loses nothing."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from helpers import make_project

from autopilot import fsio, ledger, schemas
from autopilot.journal import record
from autopilot.paths import Project
from autopilot.study import Study


def load_study(root: Path, name: str = "digits_cnn") -> Study:
    path = root / "config" / f"{name}.yaml"
    if not path.exists():
        config = yaml.safe_load((root / "config" / "config.yaml").read_text())
        path.write_text(yaml.safe_dump({**config, "study": name}))
    return Study.load(Project(root), path)


def trained_run(study: Study, run_id: str, value: float) -> None:
    """A run folder as the trainer leaves it: proposal, config and summary, not judged yet."""
    run = study.paths.run(run_id)
    overrides = {} if run_id == "00001" else {"lr": 0.001 * int(run_id)}
    fsio.atomic_write_json(run.proposal, {"run_id": run_id, "policy": "tpe", "overrides": overrides,
                                          "rationale": f"run {run_id}: a smaller step may generalise better",
                                          "hypothesis": "accuracy goes up", "fallback_from": None})
    fsio.atomic_write_json(run.config, {"run_id": run_id, "hparams": {**study.config["baseline"], **overrides}})
    fsio.atomic_write_json(run.summary, {"status": "completed", "metric": {"value": value}, "train_seconds": 1.0,
                                         "wall_seconds": 1.5})


def judge(study: Study, run_id: str) -> None:
    """What the judge leaves: verdict.json (the first run is the baseline, the others regress)."""
    run = study.paths.run(run_id)
    value = fsio.read_json(run.summary)["metric"]["value"]
    first = run_id == "00001"
    fsio.atomic_write_json(run.verdict, {
        "verdict": "baseline" if first else "regressed", "value": value, "seed_values": [value],
        "compared_to": None if first else "00001", "delta": None if first else round(value - 0.9, 6),
        "interval": None if first else {"low": -0.2, "high": -0.01, "method": "pooled_t"},
        "reason": "first successful run" if first else "clearly below the noise band",
        "judged_at": "2026-01-01T00:00:00+00:00"})


def judge_next(study: Study) -> bool:
    """Judge the first run without a verdict (runs are judged in order); False when all are judged."""
    for run_id in study.paths.run_ids():
        if not study.paths.run(run_id).verdict.exists():
            judge(study, run_id)
            return True
    return False


def sections(study: Study) -> list[str]:
    return [line.split(":")[0].removeprefix("## Run ") for line in study.paths.labbook.read_text().splitlines()
            if line.startswith("## Run ")]


@pytest.fixture
def study(tmp_path) -> Study:
    return load_study(make_project(tmp_path / "p"))


def test_torn_invalid_and_wrong_lines_are_skipped_reported_and_recorded_again(study, caplog):
    for i, run_id in enumerate(("00001", "00002", "00003", "00004"), 1):
        trained_run(study, run_id, 0.9 - i / 100)
        judge(study, run_id)
    history = record.sync(study)
    lines = study.paths.history.read_text().splitlines()
    bad_entry = {**json.loads(lines[1]), "value": "0.88"}  # right JSON, wrong type: TPE would crash on it
    del bad_entry["params"]
    study.paths.history.write_text("\n".join([lines[0], json.dumps(bad_entry), "{not json", lines[3][:40]]))

    assert [e["run_id"] for e in ledger.read_history(study.paths)] == ["00001"]
    for number, what in ((2, "not a history entry ((top level): 'params' is a required"),
                         (3, "not valid JSON"), (4, "torn last line")):
        assert f"history.jsonl: line {number} skipped: {what}" in caplog.text

    assert [e["run_id"] for e in record.sync(study)] == ["00001", "00002", "00003", "00004"]  # from the run folders
    assert [e["run_id"] for e in ledger.read_history(study.paths)] == ["00001", "00002", "00003", "00004"]
    assert ledger.read_history(study.paths) == history
    assert sections(study) == ["00001", "00002", "00003", "00004"]  # the labbook was complete: not written twice


def test_every_line_read_is_a_valid_history_entry(study):
    trained_run(study, "00001", 0.9)
    judge(study, "00001")
    [entry] = record.sync(study)
    schemas.validate(entry, "history_entry")
    for wrong in ({**entry, "verdict": "promoted"}, {**entry, "seed_values": [0.9, None]}, [entry], "00001"):
        study.paths.history.write_text(json.dumps(wrong) + "\n")
        assert not schemas.is_valid(wrong, "history_entry")
        assert ledger.read_history(study.paths) == []


# --- the storm -----------------------------------------------------------------------------------------------
ROUNDS, MAX_ROUNDS = 100, 200  # at least ROUNDS; up to MAX_ROUNDS while a loaded machine lets too few kills land
RUNS = MAX_ROUNDS  # per study: a round judges and journals at most one, so the storm never runs dry


def power_cut_during_the_history_append(rng: random.Random) -> None:
    """In a child: the next history line reaches the disk only in part, then the machine is gone."""
    real = fsio.append_jsonl

    def torn(path, obj):
        if Path(path).name != "history.jsonl":
            return real(path, obj)
        data = (json.dumps(obj) + "\n").encode()
        with open(path, "ab") as f:
            f.write(data[:rng.randrange(1, len(data))])
            f.flush()
            os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    fsio.append_jsonl = torn


def disk_full_during_the_history_append(rng: random.Random) -> None:
    """In a child: the disk fills up part-way through the next history line."""
    real_write = os.write
    full = []

    def write(fd, data):
        if full:
            raise OSError(errno.ENOSPC, "No space left on device")
        if not os.readlink(f"/proc/self/fd/{fd}").endswith("history.jsonl"):
            return real_write(fd, data)
        full.append(fd)
        return real_write(fd, bytes(data[:rng.randrange(1, len(data))]))

    os.write = write


def journal_in_a_child(studies: list[Study], mode: str, seed: int) -> int:
    """Fork a process that judges the next runs and journals them, as `autopilot judge` and `journal` do."""
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        rng = random.Random(seed)
        if mode == "power-cut":
            power_cut_during_the_history_append(rng)
        elif mode == "disk-full":
            disk_full_during_the_history_append(rng)
        for study in studies:
            judge_next(study)
            record.sync(study)
    except OSError as e:
        code = 3 if e.errno == errno.ENOSPC else 1  # a full disk fails the command; the next invocation goes on
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1  # e.g. a ledger that cannot be read any more: every command would fail like this
    os._exit(code)


def check_readable(study: Study) -> None:
    """What a reader finds between two invocations: a torn last line at worst, never a bad line before it."""
    lines = list(fsio.scan_jsonl(study.paths.history))
    for line in lines:
        assert line.problem is None or (line.torn and line is lines[-1]), f"line {line.number}: {line.problem}"
        assert line.problem or schemas.is_valid(line.record, "history_entry")
    ids = [e["run_id"] for e in ledger.read_history(study.paths)]
    assert ids == sorted(set(ids)), "a run is in the ledger twice, or out of order"
    if study.paths.best.exists():
        fsio.read_json(study.paths.best)


@pytest.fixture
def fast_disk(tmp_path):
    """The storm is about where a kill lands, not about the disk: on tmpfs an fsync costs nothing, so a hundred
    rounds take seconds (on a disk each fsync here costs ~5 ms, and a journaled run makes five)."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="autopilot-storm-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_storm_of_sigkills_and_power_cuts_during_journal_writes_loses_nothing(fast_disk):
    root = make_project(fast_disk / "p")
    studies = [load_study(root), load_study(root, "second_study")]
    for study in studies:
        for k in range(1, RUNS + 1):
            trained_run(study, f"{k:05d}", 0.9 - k / 1000)
    rng = random.Random(20260101)
    outcomes = {"killed": 0, "finished": 0, "power-cut": 0, "disk-full": 0}
    started = time.monotonic()
    rounds = []  # how long the children that finished took: the kills land inside the quick quarter of that
    for _ in range(2):
        t0 = time.monotonic()
        assert os.waitstatus_to_exitcode(os.waitpid(journal_in_a_child(studies, "kill", 0), 0)[1]) == 0
        rounds.append(time.monotonic() - t0)
    enough = {"killed": 30, "power-cut": 5, "disk-full": 5}
    for round_ in range(MAX_ROUNDS):
        if round_ >= ROUNDS and all(outcomes[k] >= n for k, n in enough.items()):
            break
        mode = rng.choices(["kill", "power-cut", "disk-full"], weights=[6, 2, 2])[0]
        t0 = time.monotonic()
        pid = journal_in_a_child(studies, mode, seed=round_)
        if mode == "kill":
            time.sleep(rng.uniform(0, sorted(rounds)[len(rounds) // 4]))
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        assert code in (0, 3, -signal.SIGKILL), f"round {round_} ({mode}): the child failed with status {code}"
        if code == 0:
            rounds.append(time.monotonic() - t0)
        outcomes["killed" if code == -signal.SIGKILL and mode == "kill" else
                 "finished" if code == 0 else mode] += 1
        for study in studies:
            check_readable(study)
    took = time.monotonic() - started
    journaled = sum(len(ledger.read_history(study.paths)) for study in studies)

    for study in studies:  # the next invocation judges what is left and journals it
        for run_id in study.paths.run_ids():
            if not study.paths.run(run_id).verdict.exists():
                judge(study, run_id)
        history = record.sync(study)
        run_ids = [f"{k:05d}" for k in range(1, RUNS + 1)]
        assert [e["run_id"] for e in history] == run_ids
        assert [e["run_id"] for e in ledger.read_history(study.paths)] == run_ids  # nothing lost, nothing twice
        assert sections(study) == run_ids
        for e in history:
            assert fsio.read_json(study.paths.run(e["run_id"]).entry) == e
        assert fsio.read_json(study.paths.best)["run_id"] == "00001"
    print(f"storm: {ROUNDS} rounds in {took:.1f}s: {outcomes}; {journaled} runs journaled during the storm")
    assert all(outcomes[k] >= n for k, n in enough.items()), outcomes
    assert journaled >= 20  # the storm hit journal writes, not idle children


# --- a seed's summary counts only when it answers its config -------------------------------------------------
def seed_files(run, config: dict | None, summary_nonce: str | None | bool, value: float = 0.9) -> None:
    """A seed folder: its config.json (None: none) and a summary echoing `summary_nonce` (False: no nonce key)."""
    if config is not None:
        fsio.atomic_write_json(run.config, config)
    summary = {"status": "completed", "metric": {"value": value}, "train_seconds": 1.0}
    if summary_nonce is not False:
        summary["nonce"] = summary_nonce
    fsio.atomic_write_json(run.summary, summary)


def test_a_seed_summary_counts_only_when_it_answers_its_seed_folders_config(study, caplog):
    run = study.paths.run("00001")
    seed_files(run, {"run_id": "00001", "nonce": "aaaa"}, "aaaa")
    seed_files(run.seed(1), {"run_id": "00001", "nonce": "bbbb"}, "bbbb", 0.8)       # a seed that ran: counted
    seed_files(run.seed(2), {"run_id": "00001", "nonce": "cccc"}, "old1", 0.99)      # from an earlier start
    seed_files(run.seed(3), None, "dddd", 0.99)                                      # no seed was started here
    seed_files(run.seed(4), {"run_id": "00001", "nonce": "eeee"}, False, 0.99)       # never echoed one
    seed_files(run.seed(5), {"run_id": "00001"}, False, 0.7)                         # before nonces: both none
    assert [(k, s["metric"]["value"]) for k, s in ledger.seed_summaries(run)] == [(0, 0.9), (1, 0.8), (5, 0.7)]
    assert "seed-2/trainer_summary.json is not counted: it does not answer" in caplog.text
    assert ledger.first_summary(run)["metric"]["value"] == 0.9

    seed_files(run, None, "zzzz")  # the run's own summary replaced by one for another config
    stand_in = ledger.first_summary(run)
    assert stand_in["status"] == "failed" and "does not answer this run's config.json" in stand_in["error"]
    assert [k for k, _ in ledger.seed_summaries(run)] == [1, 5]
