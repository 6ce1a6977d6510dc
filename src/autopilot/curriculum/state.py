"""The curriculum's state, runs/<study>/curriculum.json: per skill its level and the champion's evaluations.

After each run the judge step records one evaluation per skill (`record_run`, once per run): the accuracy, by
the skill's exact grader, of the champion after the run (the run's weights if they were promoted, else the
champion's) on the held-out set of the skill's current level and of every level below. Then:

  * advance: a skill moves up one level (never more) when the mean accuracy of its last `window` evaluations at
    its current level is at least `advance_at`; an evaluation of an unchanged champion counts again (the same
    weights measured again give the same number: the level is held, not re-proven);
  * forgetting: an earlier level whose latest accuracy is below `advance_at` is listed under `forgotten` (the
    labbook says so when it starts and ends, `autopilot status` and the report show it), and the next batch's
    replay share is drawn from the forgotten levels.

The state is read again by every step (a restarted daemon resumes at the same levels) and written atomically
under a lock.

Usage:
    state = load(study)                                 # the levels: state["skills"]["binary"]["level"]
    rows = summary(study)                               # per skill: level, recent accuracies, forgotten (status)
    record_run(study, "00007", model="00007", scores)   # scores: [Score("binary", 2, 33, 40), ...]
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from filelock import FileLock

from autopilot import fsio, schemas
from autopilot.clock import now_iso
from autopilot.curriculum import SKILLS
from autopilot.journal import record as journal
from autopilot.study import Study

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Score:
    """A model's result on one level's held-out set."""

    skill: str
    level: int
    correct: int
    examples: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.examples


def fresh_skill(skill: str) -> dict:
    return {"level": 1, "max_level": SKILLS[skill].MAX_LEVEL, "batches": 0, "evaluations": [], "advances": [],
            "mastered": {}, "forgotten": []}


def load(study: Study) -> dict:
    """The state on disk, with every configured skill (a new one starts at level 1)."""
    path = study.paths.curriculum
    state = fsio.read_json(path) if path.exists() else {"study": study.name, "skills": {}, "runs": [],
                                                         "updated_at": now_iso()}
    for skill in study.settings.curriculum.skills:
        state["skills"].setdefault(skill, fresh_skill(skill))
    return state


def levels(state: dict, skills: tuple[str, ...]) -> dict[str, int]:
    return {skill: state["skills"][skill]["level"] for skill in skills}


def save(study: Study, state: dict) -> None:
    state["updated_at"] = now_iso()
    schemas.validate(state, "curriculum", what=str(study.paths.curriculum))
    fsio.atomic_write_json(study.paths.curriculum, state)


@contextlib.contextmanager
def changing(study: Study) -> Iterator[dict]:
    """The state under the study's curriculum lock, saved when the block ends without an error."""
    study.paths.dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(study.paths.curriculum_lock)):
        state = load(study)
        yield state
        save(study, state)


def record_run(study: Study, run_id: str, model: str | None, scores: list[Score]) -> dict:
    """Record the run's evaluation of each skill, advance and detect forgetting; a run already recorded is a no-op."""
    notes = []
    with changing(study) as state:
        if run_id in state["runs"]:
            return state
        for skill in study.settings.curriculum.skills:
            mine = {s.level: s for s in scores if s.skill == skill}
            if mine:
                notes += evaluate(study, state["skills"][skill], skill, run_id, model, mine)
        state["runs"].append(run_id)
    for title, text in notes:  # after the state is saved: a note is never written for a change that was not
        journal.note(study, title, text)
    return state


def evaluate(study: Study, entry: dict, skill: str, run_id: str, model: str | None,
             scores: dict[int, Score]) -> list[tuple[str, str]]:
    """Append one evaluation to a skill's entry; return the labbook notes of what changed."""
    scores = {k: s for k, s in scores.items() if k <= entry["level"]}  # a level not reached yet does not count
    if not scores:
        return []
    level = max(scores)  # the current level (the run was guarded at it), or the highest measured below it
    top = scores[level]
    entry["evaluations"].append({
        "run_id": run_id, "model": model, "level": level, "accuracy": round(top.accuracy, 6), "correct": top.correct,
        "examples": top.examples, "earlier": {str(k): round(s.accuracy, 6) for k, s in sorted(scores.items())
                                              if k < level}, "at": now_iso()})
    notes = forgetting(study, entry, skill, run_id, scores, level)
    return notes + advance(study, entry, skill, run_id)


def forgetting(study: Study, entry: dict, skill: str, run_id: str, scores: dict[int, Score],
               level: int) -> list[tuple[str, str]]:
    """List the earlier levels below the mastery threshold now; a note for each level newly forgotten or regained."""
    bar = study.settings.curriculum.advance_at
    before = {f["level"] for f in entry["forgotten"]}
    entry["forgotten"] = [{"level": k, "accuracy": round(s.accuracy, 6), "mastered": entry["mastered"].get(str(k)),
                           "run_id": run_id} for k, s in sorted(scores.items()) if k < level and s.accuracy < bar]
    now = {f["level"] for f in entry["forgotten"]}
    notes = []
    for f in entry["forgotten"]:
        if f["level"] not in before:
            was = "" if f["mastered"] is None else f" (it was mastered at {f['mastered']:.0%})"
            notes.append((f"Curriculum: {skill} forgets level {f['level']}",
                          f"- after run {run_id} the champion answers {f['accuracy']:.0%} of level {f['level']}'s "
                          f"held-out set, below {bar:.0%}{was}\n- the next {skill} batches replay that level"))
    for k in sorted(before - now):
        notes.append((f"Curriculum: {skill} regains level {k}",
                      f"- after run {run_id} the champion answers {scores[k].accuracy:.0%} of level {k} again"
                      if k in scores else f"- run {run_id} no longer measures level {k}"))
    return notes


def advance(study: Study, entry: dict, skill: str, run_id: str) -> list[tuple[str, str]]:
    """Move up one level when the last `window` evaluations at the current level average at least `advance_at`."""
    c = study.settings.curriculum
    level = entry["level"]
    at_level = [e["accuracy"] for e in entry["evaluations"] if e["level"] == level][-c.window:]
    if len(at_level) < c.window or sum(at_level) / len(at_level) < c.advance_at - 1e-12:
        return []
    mean = sum(at_level) / len(at_level)
    first = str(level) not in entry["mastered"]
    entry["mastered"][str(level)] = round(mean, 6)
    if level >= entry["max_level"]:  # the last level: mastered, nothing to move up to
        return [(f"Curriculum: {skill} masters its last level ({level})",
                 f"- the champion answered {mean:.0%} of it over the last {c.window} evaluations")] if first else []
    entry["level"] = level + 1
    entry["advances"].append({"from": level, "to": level + 1, "run_id": run_id, "accuracies": at_level,
                              "at": now_iso()})
    log.info("curriculum: %s advances to level %d after run %s", skill, level + 1, run_id)
    return [(f"Curriculum: {skill} advances to level {level + 1}",
             f"- the champion answered {', '.join(f'{a:.0%}' for a in at_level)} of level {level}'s held-out set over "
             f"the last {c.window} evaluations (mean {mean:.0%}, at least {c.advance_at:.0%} needed)\n"
             f"- batches are generated at level {level + 1} from now on; level {level} is replayed and still "
             f"measured")]


TREND = 6  # evaluations shown per skill by `autopilot status` and the report


def summary(study: Study) -> dict[str, dict]:
    """Per configured skill, for people: level, the last evaluations, what moving up needs, what is forgotten."""
    c = study.settings.curriculum
    if not c.enabled:
        return {}
    st = load(study) if study.paths.curriculum.exists() else None
    out = {}
    for skill in c.skills:
        entry = st["skills"][skill] if st else fresh_skill(skill)
        at_level = [e["accuracy"] for e in entry["evaluations"] if e["level"] == entry["level"]][-c.window:]
        out[skill] = {"level": entry["level"], "max_level": entry["max_level"], "window": at_level,
                      "needs": {"mean": c.advance_at, "over": c.window},
                      "trend": [{"run_id": e["run_id"], "level": e["level"], "accuracy": e["accuracy"]}
                                for e in entry["evaluations"][-TREND:]],
                      "forgotten": entry["forgotten"], "advances": entry["advances"], "batches": entry["batches"]}
    return out


def describe(row: dict) -> str:
    """One line: `level 2 of 5; at it 0.75 0.88 (needs a mean of 0.80 over 3); forgets level 1 (0.55)`."""
    window = " ".join(f"{a:.2f}" for a in row["window"]) or "not measured yet"
    line = (f"level {row['level']} of {row['max_level']}; at it {window} (needs a mean of {row['needs']['mean']:.2f} "
            f"over {row['needs']['over']})")
    if row["forgotten"]:
        line += "; FORGETS " + ", ".join(f"level {f['level']} ({f['accuracy']:.2f})" for f in row["forgotten"])
    return line
