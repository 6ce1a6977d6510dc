"""The one place that knows the project's folder layout.

    <root>/inbox/                       dataset files dropped by people and scripts
    <root>/inbox/.ingesting/            files ingest has claimed (renamed away from their name) while it reads them
    <root>/queue/{high,normal,low}/     validated dataset files, oldest first
    <root>/queue/{failed,processing,done}/
    <root>/queue/quarantine/            continual mode: datasets whose run regressed the champion, with the evidence
    <root>/control/{pause,stop,skip}    control files (their existence is the signal);
    <root>/control/stop-after-run       ...and `stop` without --now: no new run once the current one ends
    <root>/status/status.json           live phase, run, step, heartbeat
    <root>/status/{daemon.json,instance.lock,instance.pid}   the daemon's state; one cron or daemon at a time
    <root>/runs/<study>/                one study: labbook.md, history.jsonl, best.json, <run>/...
    <root>/runs/<study>/<run>/          one run: proposal, guard, config, metrics, summary, verdict
    <root>/cache/tokens/<key>.npz       tokenized training files (autopilot.train.token_cache)
    <root>/models/<study>/              the champion: current (a symlink swapped atomically), history.jsonl,
                                        test_scores.jsonl, and one folder per champion kept (<run>/)
    <root>/runs/<study>/<run>/code/     code mode: the run's worktree (tree/) and attempts (attempt-k/)
    <root>/runs/<study>/pending/        code mode: patches waiting for `autopilot approve` (<run>.json, <run>.diff)
    <root>/runs/<study>/curriculum.json the curriculum: per skill its level and evaluation history
    <root>/runs/<study>/curriculum/<skill>/level-NN.eval.jsonl   the held-out set of each level reached
    <root>/runs/<study>/<run>/seeds/seed-k/       the run's extra seeds (the same files)
    <root>/runs/<study>/<run>/incumbent/seed-k/   seeds of the incumbent's config this run trained for the judge

Run ids are zero-padded numbers so that `ls` and `sorted()` give the order in which runs were made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# what `autopilot init` copies (and a wheel carries: setup.py)
PROJECT_FILES = ("Snakefile", "rules", "config", "profiles", "schemas", "envs", "examples")
STATE_DIRS = ("inbox", "queue", "runs")  # made empty by `autopilot init`; their contents are not kept in git
RUN_ID_WIDTH = 5
RUN_ID_RE = re.compile(rf"^\d{{{RUN_ID_WIDTH}}}$")
PRIORITIES = ("high", "normal", "low")
CONTROL_SIGNALS = ("pause", "stop", "skip", "stop-after-run")


def format_run_id(number: int) -> str:
    return f"{number:0{RUN_ID_WIDTH}d}"


def run_number(run_id: str) -> int:
    return int(run_id)


@dataclass(frozen=True)
class RunPaths:
    """Files of one run (or of one extra seed of a run: same layout, under `seeds/<k>/`)."""

    dir: Path

    @property
    def id(self) -> str:
        return self.dir.name

    proposal = property(lambda self: self.dir / "proposal.json")
    rejected_proposal = property(lambda self: self.dir / "rejected_proposal.json")
    manual_input = property(lambda self: self.dir / "manual_input.json")
    guard = property(lambda self: self.dir / "guard.json")
    data_claim = property(lambda self: self.dir / "data_claim.json")  # data.source queue: the dataset claimed
    config = property(lambda self: self.dir / "config.json")
    metrics = property(lambda self: self.dir / "metrics.jsonl")
    summary = property(lambda self: self.dir / "trainer_summary.json")
    train_log = property(lambda self: self.dir / "train.log")
    trainer_lock = property(lambda self: self.dir / ".trainer.lock")  # one trainer at a time (train.runlock)
    checkpoint = property(lambda self: self.dir / "checkpoint")
    verdict = property(lambda self: self.dir / "verdict.json")
    entry = property(lambda self: self.dir / "journal_entry.json")
    registry = property(lambda self: self.dir / "registry.json")  # what the champion step did after the journal
    llm = property(lambda self: self.dir / "llm")
    logs = property(lambda self: self.dir / "logs")
    seeds_dir = property(lambda self: self.dir / "seeds")
    incumbent_seeds_dir = property(lambda self: self.dir / "incumbent")  # the incumbent's config, trained here
    patch = property(lambda self: self.dir / "patch.diff")  # code mode: the run's patch against its base
    code_dir = property(lambda self: self.dir / "code")  # code mode: worktrees, attempts, checks' logs
    worktree = property(lambda self: self.dir / "code" / "tree")  # the run's code, checked out to train
    kept_evaluations = property(lambda self: self.dir / "code" / "evaluations")  # seed-k.json: what counts
    sandbox = property(lambda self: self.dir / "sandbox.json")  # what each sandboxed process had and lacked
    evaluation = property(lambda self: self.dir / "evaluation.json")  # the sealed evaluator's output
    # continual mode: the champion's scores on the run's evaluation sets, measured by the trainer before its first step
    eval_before = property(lambda self: self.dir / "eval_before.json")

    def attempt_dir(self, k: int) -> Path:
        """Code mode: attempt k (1, 2, ...) of the run's patch: its worktree, diff and checks' logs."""
        return self.dir / "code" / f"attempt-{k}"

    def seed(self, k: int) -> RunPaths:
        """Extra seed `k` (1, 2, ...) of this run; seed 0 is the run folder itself."""
        return self if k == 0 else RunPaths(self.seeds_dir / f"seed-{k}")

    def incumbent_seed(self, k: int) -> RunPaths:
        """Seed `k` (1, 2, ...) of the incumbent's config that this run trained to add to the incumbent's record."""
        return RunPaths(self.incumbent_seeds_dir / f"seed-{k}")

    def is_finished(self) -> bool:
        return self.verdict.exists()


@dataclass(frozen=True)
class StudyPaths:
    dir: Path

    @property
    def name(self) -> str:
        return self.dir.name

    history = property(lambda self: self.dir / "history.jsonl")
    labbook = property(lambda self: self.dir / "labbook.md")
    best = property(lambda self: self.dir / "best.json")
    next_config = property(lambda self: self.dir / "next_config.json")
    effective_config = property(lambda self: self.dir / "study.json")
    logs = property(lambda self: self.dir / "logs")
    paused = property(lambda self: self.dir / "paused.json")  # the study paused itself (failure spike, disk low)
    report = property(lambda self: self.dir / "report.html")
    fallbacks = property(lambda self: self.dir / "fallbacks.json")  # why first proposals were not used, by run
    journal_lock = property(lambda self: self.dir / ".journal.lock")
    workpad = property(lambda self: self.dir / "workpad.md")  # the LLM worker's notes to itself
    shared_todo = property(lambda self: self.dir / "shared_todo.md")  # TODOs of the worker and the mentor
    mentor_notes = property(lambda self: self.dir / "mentor_notes.md")
    workpad_lock = property(lambda self: self.dir / ".workpad.lock")
    events = property(lambda self: self.dir / "events.jsonl")  # promotions, holds, stops: what notify tells
    retention_log = property(lambda self: self.dir / "retention.jsonl")  # checkpoint folders pruned, per run
    pending = property(lambda self: self.dir / "pending")  # code mode: patches waiting for a person's approval
    code_repo = property(lambda self: self.dir / "code.git")  # code mode, a project that is not a git checkout
    code_lock = property(lambda self: self.dir / ".code.lock")
    curriculum = property(lambda self: self.dir / "curriculum.json")  # per skill: level, evaluations, advances
    curriculum_dir = property(lambda self: self.dir / "curriculum")  # the held-out sets of the levels reached
    curriculum_lock = property(lambda self: self.dir / ".curriculum.lock")

    def held_out(self, skill: str, level: int) -> Path:
        """The held-out evaluation set of one curriculum level: generated once, never trained on."""
        return self.dir / "curriculum" / skill / f"level-{level:02d}.eval.jsonl"

    def pending_record(self, run_id: str) -> Path:
        return self.dir / "pending" / f"{run_id}.json"

    def pending_diff(self, run_id: str) -> Path:
        return self.dir / "pending" / f"{run_id}.diff"

    def run(self, run_id: str) -> RunPaths:
        return RunPaths(self.dir / run_id)

    def run_ids(self) -> list[str]:
        """Ids of every run folder, in order."""
        if not self.dir.is_dir():
            return []
        return sorted(p.name for p in self.dir.iterdir() if RUN_ID_RE.match(p.name) and p.is_dir())


@dataclass(frozen=True)
class ChampionPaths:
    """One champion's folder, models/<study>/<run>/: written once when the run is first promoted, never changed
    after the pointer names it (a rollback restores it byte for byte)."""

    dir: Path

    @property
    def run_id(self) -> str:
        return self.dir.name

    record = property(lambda self: self.dir / "champion.json")  # run, metric, interval, test score, weights
    weights = property(lambda self: self.dir / "model")  # save_pretrained folder, or state dict + config.json
    test_dir = property(lambda self: self.dir / "test")
    test_request = property(lambda self: self.dir / "test" / "request.json")
    test_summary = property(lambda self: self.dir / "test" / "test_summary.json")
    test_log = property(lambda self: self.dir / "test" / "test.log")


@dataclass(frozen=True)
class ModelPaths:
    """The champion of one study: models/<study>/."""

    dir: Path

    current = property(lambda self: self.dir / "current")  # symlink to <run>/, replaced with one rename
    history = property(lambda self: self.dir / "history.jsonl")  # promotions, manual promotions, rollbacks
    test_scores = property(lambda self: self.dir / "test_scores.jsonl")  # one held-out evaluation per champion
    lock = property(lambda self: self.dir / ".registry.lock")

    def champion(self, run_id: str) -> ChampionPaths:
        return ChampionPaths(self.dir / run_id)

    def champion_ids(self) -> list[str]:
        """Run ids of the champion folders on disk, in order."""
        if not self.dir.is_dir():
            return []
        return sorted(p.name for p in self.dir.iterdir() if RUN_ID_RE.match(p.name) and p.is_dir())


@dataclass(frozen=True)
class Project:
    root: Path

    inbox = property(lambda self: self.root / "inbox")
    ingesting = property(lambda self: self.root / "inbox" / ".ingesting")  # in the inbox: a rename always works
    queue = property(lambda self: self.root / "queue")
    runs = property(lambda self: self.root / "runs")
    models_dir = property(lambda self: self.root / "models")
    control = property(lambda self: self.root / "control")
    status_dir = property(lambda self: self.root / "status")
    status = property(lambda self: self.root / "status" / "status.json")
    daemon_state = property(lambda self: self.root / "status" / "daemon.json")  # written by `autopilot daemon`
    instance_lock = property(lambda self: self.root / "status" / "instance.lock")  # one cron or daemon at a time
    instance_pid = property(lambda self: self.root / "status" / "instance.pid")  # ...and the pid that holds it
    failed = property(lambda self: self.root / "queue" / "failed")
    retried = property(lambda self: self.root / "queue" / "failed" / "retried")  # reasons of files sent back
    ingest_lock = property(lambda self: self.root / "queue" / ".ingest.lock")
    default_config = property(lambda self: self.root / "config" / "config.yaml")  # the embedded default study
    snakemake_locks = property(lambda self: self.root / ".snakemake" / "locks")
    processing = property(lambda self: self.root / "queue" / "processing")
    done = property(lambda self: self.root / "queue" / "done")
    quarantine = property(lambda self: self.root / "queue" / "quarantine")  # continual: datasets that regressed
    quarantine_retried = property(lambda self: self.root / "queue" / "quarantine" / "retried")  # their evidence
    config_readme = property(lambda self: self.root / "config" / "README.md")  # written by `autopilot config docs`
    token_cache = property(lambda self: self.root / "cache" / "tokens")  # tokenized data, by content hash

    def queue_dir(self, priority: str) -> Path:
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {PRIORITIES}, got {priority!r}")
        return self.queue / priority

    def control_file(self, signal: str) -> Path:
        return control_file(self.control, signal)

    def study(self, name: str) -> StudyPaths:
        return StudyPaths(self.runs / name)

    def models(self, name: str) -> ModelPaths:
        return ModelPaths(self.models_dir / name)

    @classmethod
    def find(cls, start: Path | None = None) -> Project:
        """The project whose root holds `Snakefile` or `config/`, searching upwards from `start` (cwd)."""
        here = Path(start or Path.cwd()).resolve()
        for candidate in (here, *here.parents):
            if (candidate / "Snakefile").exists() or (candidate / "config" / "config.yaml").exists():
                return cls(candidate)
        return cls(here)


def control_file(control_dir: Path, signal: str) -> Path:
    """A control file in `control_dir` (a trainer knows the folder from its config.json, not the project)."""
    if signal not in CONTROL_SIGNALS:
        raise ValueError(f"control signal must be one of {CONTROL_SIGNALS}, got {signal!r}")
    return Path(control_dir) / signal


def generation_run_id(run_id: str, index: int, place: int) -> str:
    """The run at `place` of the generation in which `run_id` is at `index`: a generation's runs are numbered
    one after another, place 0 first."""
    return format_run_id(run_number(run_id) - index + place)
