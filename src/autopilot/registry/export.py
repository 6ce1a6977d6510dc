"""A promoted run's final weights, exported into its champion folder (models/<study>/<run>/model/).

The weights are those of the run's completed seed with the best validation metric whose final checkpoint is
still on disk (its seeds are samples of one config; the held-out test score is measured on the seed picked,
after the pick). Per task:
    cnn_digits  model.pt (the state dict, no optimizer) and config.json (what builds the model)
    causal_lm   a save_pretrained folder: a full fine-tune as trained, LoRA merged into the base weights
                (registry.lora: merge) or the adapter alone (registry.lora: adapter, served on model.path)
    command     the trainer's final checkpoint (trainer_summary.json's `checkpoint`), copied as it is

Usage:
    weights = export_weights(study, "00007", models.champion("00007").weights)   # champion.json's `weights`
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from autopilot import ledger
from autopilot.paths import RunPaths
from autopilot.study import Study

log = logging.getLogger(__name__)


def pick_seed(study: Study, run: RunPaths) -> tuple[int, dict] | None:
    """(k, summary) of the completed seed with the best validation metric that still has its final checkpoint."""
    root = study.project.root
    found = [(k, s) for k, s in ledger.seed_summaries(run)
             if ledger.is_success(s) and s.get("checkpoint") and (root / s["checkpoint"]).exists()]
    if not found:
        return None
    sign = 1.0 if study.maximize else -1.0
    return max(found, key=lambda ks: (sign * ks[1]["metric"]["value"], -ks[0]))  # ties: the lowest seed index


def no_weights(error: str) -> dict:
    return {"format": "none", "path": None, "seed_index": None, "source": None, "base_model": None, "error": error}


def export_weights(study: Study, run_id: str, dest: Path) -> dict:
    """Write the run's weights into `dest` (which must not exist); return champion.json's `weights` block.

    A run whose checkpoints are gone (retention, or a trainer that writes none) or whose export fails gets
    format `none` with the reason: the champion is still the champion, it just cannot be served.
    """
    run = study.paths.run(run_id)
    chosen = pick_seed(study, run)
    if chosen is None:
        return no_weights(f"no completed seed of run {run_id} has its final checkpoint on disk (the trainer wrote "
                          "none, or retention removed it: see retention.keep_last_runs)")
    k, summary = chosen
    source = study.project.root / summary["checkpoint"]
    task, base = study.settings.task, study.settings.model and study.settings.model.path
    try:
        fmt = write(study, run, source, dest)
    except Exception as e:  # a damaged checkpoint, a missing extra: recorded, and the loop goes on
        shutil.rmtree(dest, ignore_errors=True)
        log.exception("run %s: exporting %s failed", run_id, source)
        return no_weights(f"exporting {summary['checkpoint']} failed: {type(e).__name__}: {e}")
    return {"format": fmt, "path": dest.name, "seed_index": k, "source": summary["checkpoint"],
            "base_model": base if task == "causal_lm" and fmt == "peft_adapter" else None, "error": None}


def write(study: Study, run: RunPaths, source: Path, dest: Path) -> str:
    """Export by task; returns the format written."""
    task = study.settings.task
    if task == "cnn_digits":
        from autopilot.train.tasks import cnn_digits

        cnn_digits.export(source, ledger.read_path(run.config)["hparams"], dest)
        return "pytorch_state_dict"
    if task == "causal_lm":
        if (source / "model").is_dir():  # a full fine-tune: its save_pretrained folder as trained; copied without
            shutil.copytree(source / "model", dest)  # importing the task (peft, transformers: seconds per promotion)
            return "transformers"
        from autopilot.train.tasks import causal_lm

        # a LoRA is merged into the weights it was trained on: model.path, or in continual mode the champion the run
        # started from (config.json init_model)
        started = (ledger.read_path(run.config) or {}).get("init_model")
        base = study.project.root / (started or study.settings.model.path)
        return causal_lm.export(source, base, dest, study.settings.registry.lora)
    if source.is_dir():
        shutil.copytree(source, dest)
    else:
        dest.mkdir(parents=True)
        shutil.copy2(source, dest / source.name)
    return "files"
