"""The held-out set of each curriculum level, and the evaluation sets a continual run is measured on.

Each level a skill reaches gets a fixed set of `curriculum.eval_size` problems (at most half of the level's
distinct problems), generated once from the study's seed into runs/<study>/curriculum/<skill>/level-NN.eval.jsonl
and never changed: a batch never trains on its problems (`keys`). Every run is evaluated on the set of the
current level of each skill and on those of the levels below it (forgetting shows there).

Usage:
    sets = eval_sets(study, levels)       # [{name: "binary@L2", file, spec, skill, level}, ...]
    records = load(study, "binary", 2)     # the held-out records (generated on first use)
"""

from __future__ import annotations

import json

from autopilot import fsio
from autopilot.curriculum import SKILLS
from autopilot.study import Study


def size(study: Study, skill: str, level: int) -> int:
    return max(1, min(study.settings.curriculum.eval_size, SKILLS[skill].space(level) // 2))


def ensure(study: Study, skill: str, level: int) -> None:
    """Write the level's held-out set if it is not on disk yet (once: the set never changes afterwards)."""
    path = study.paths.held_out(skill, level)
    if path.exists():
        return
    records = SKILLS[skill].generate(level, size(study, skill, level), seed=f"held-out:{study.settings.seed}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fsio.atomic_write_text(path, jsonl(records))


def jsonl(records: list[dict]) -> str:
    """Records as JSON lines, as ingest takes them."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def load(study: Study, skill: str, level: int) -> list[dict]:
    ensure(study, skill, level)
    return list(fsio.iter_jsonl(study.paths.held_out(skill, level)))


def keys(study: Study, skill: str, level: int) -> frozenset[str]:
    """The problems of the level's held-out set (a batch leaves them out)."""
    return frozenset(SKILLS[skill].key(r) for r in load(study, skill, level))


def set_name(skill: str, level: int) -> str:
    return f"{skill}@L{level}"


def eval_sets(study: Study, levels: dict[str, int]) -> list[dict]:
    """The curriculum's evaluation sets for a run: per skill, its current level and every level below."""
    sets = []
    for skill, current in levels.items():
        for level in range(1, current + 1):
            ensure(study, skill, level)
            sets.append({"name": set_name(skill, level), "spec": SKILLS[skill].SPEC, "skill": skill, "level": level,
                         "file": str(study.paths.held_out(skill, level).relative_to(study.project.root))})
    return sets
