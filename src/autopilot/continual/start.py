"""Where a continual run starts: the champion's weights, and the evaluation sets both models are measured on.

The champion is the study's incumbent (the judge's last promotion, or a person's promotion or rollback), as the
registry exported it into models/<study>/<run>/model/; before the first promotion it is the base model
(model.path). The sets are the study's val_file (`val`), its `continual.eval_sets`, and, with the curriculum on,
the held-out set of each skill's current level and of every level below it.

Usage:
    before_claim(study)          # propose: the champion's weights are there, a low queue gets a curriculum batch
    start = run_start(study)     # guard: Start(champion="00004", init_model="models/s/00004/model", eval_sets=[...])
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from autopilot import ledger
from autopilot.errors import LoopHalted
from autopilot.journal import record
from autopilot.registry import store
from autopilot.study import Study

log = logging.getLogger(__name__)

VAL = "val"


@dataclass(frozen=True)
class Start:
    champion: str | None  # the run whose weights the run starts from; None: the base model (model.path)
    init_model: str  # that folder, relative to the project root
    eval_sets: list[dict]  # [{name, file, spec, skill?, level?, max_loss_rise?}]
    levels: dict[str, int]  # the curriculum's current level per skill ({} without a curriculum)


def champion_run(study: Study) -> str | None:
    """The study's incumbent: the run the next one trains further (None before the first promotion)."""
    best = ledger.incumbent(record.current_history(study), ledger.champion_events(study.models))
    return None if best is None else best["run_id"]


def champion_weights(study: Study, run_id: str) -> str:
    """The champion's exported weights folder; LoopHalted when the registry has not exported them (yet)."""
    champion = study.models.champion(run_id)
    found = store.read_champion(champion)
    if found is None:
        raise LoopHalted(f"run {run_id} is the champion, but models/{study.name}/{run_id}/ holds no exported weights "
                         f"yet (its champion step did not run): `autopilot champion --study {study.name} --run "
                         f"{run_id}` completes it, then the study goes on")
    if found["weights"]["format"] != "transformers":
        raise LoopHalted(f"run {run_id} is the champion, but it has no weights a run can start from "
                         f"({found['weights']['format']}: {found['weights']['error']}); roll back to an earlier "
                         f"champion (`autopilot models rollback --reason ...`)")
    return str((champion.dir / found["weights"]["path"]).relative_to(study.project.root))


def eval_sets(study: Study, levels: dict[str, int]) -> list[dict]:
    s = study.settings
    sets = [{"name": VAL, "file": s.data.val_file, "spec": s.data.spec}]
    sets += [{"name": e.name, "file": e.file, "spec": e.spec, "max_loss_rise": e.max_loss_rise}
             for e in s.continual.eval_sets]
    if s.curriculum.enabled:
        from autopilot.curriculum import held_out

        sets += held_out.eval_sets(study, levels)
    return sets


def curriculum_levels(study: Study) -> dict[str, int]:
    if not study.settings.curriculum.enabled:
        return {}
    from autopilot.curriculum import state

    return state.levels(state.load(study), study.settings.curriculum.skills)


def run_start(study: Study) -> Start:
    run_id = champion_run(study)
    init = study.settings.model.path if run_id is None else champion_weights(study, run_id)
    levels = curriculum_levels(study)
    return Start(run_id, init, eval_sets(study, levels), levels)


def before_claim(study: Study) -> None:
    """Propose, before it claims the run's dataset: the champion's weights must be on disk (LoopHalted names the
    step that exports them), and when the queue runs low the curriculum (if on) generates a batch into it."""
    run_id = champion_run(study)
    if run_id is not None:
        champion_weights(study, run_id)
    if study.settings.curriculum.enabled:
        from autopilot.curriculum import batches

        batches.top_up(study)
