"""Helpers of the causal-LM tests: small data, the tiny model's size, a project holding the model, config.json of
a run. The tiny model itself is the session fixture `tiny_model_dir` of conftest.py."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from autopilot import fsio, guard
from autopilot.paths import RunPaths
from autopilot.train import lm_tiny

TRAIN_CHATS = lm_tiny.synthetic_chat(48, seed=1)
VAL_CHATS = lm_tiny.synthetic_chat(12, seed=2)
VAL_COMPLETIONS = lm_tiny.synthetic_completion(8, seed=3)
HP = {"finetune": "full", "lr": 3e-3, "batch_size": 4, "grad_accum": 1, "max_steps": 6, "max_length": 64,
      "save_every": 3, "warmup_ratio": 0.2, "keep_checkpoints": 2}
SIZE = {"hidden": 32, "layers": 2, "heads": 4, "kv_heads": 2, "max_positions": 256}


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def build_tiny_model(folder: Path) -> Path:
    """A 2-layer, hidden-32 Qwen3 with a 384-token BPE tokenizer (ChatML template), saved into `folder`."""
    texts = lm_tiny.corpus(TRAIN_CHATS + VAL_CHATS + VAL_COMPLETIONS)
    return lm_tiny.build_tiny_lm(folder, texts, vocab_size=384, **SIZE)


def make_lm_project(root: Path, model_dir: Path, val: list[dict] | None = None, spec: str = "chat_sft_v1") -> Path:
    """A project root holding the model (copied under models/) and data/{train,val}.jsonl."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "models" / "tiny-lm").exists():
        shutil.copytree(model_dir, root / "models" / "tiny-lm")
    write_jsonl(root / "data" / "train.jsonl", TRAIN_CHATS)
    write_jsonl(root / "data" / "val.jsonl", VAL_CHATS if val is None else val)
    return root


def write_config(root: Path, hparams: dict | None = None, run_id: str = "00001", seed: int = 7,
                 spec: str = "chat_sft_v1", metric: tuple[str, str] = ("val_loss", "minimize"),
                 max_seconds: float = 300, runtime: dict | None = None, **data) -> RunPaths:
    """config.json of a run; `runtime` - the study's causal_lm settings (none: every default)."""
    run = RunPaths(root / "runs" / "lm" / run_id)
    run.dir.mkdir(parents=True, exist_ok=True)
    config = guard.config_document(
        run_id, "lm", "causal_lm", seed=seed, hparams={**HP, **(hparams or {})},
        metric={"name": metric[0], "goal": metric[1]}, max_seconds=max_seconds, init_model="models/tiny-lm",
        causal_lm=runtime,
        data={"source": "file", "train_file": "data/train.jsonl", "val_file": "data/val.jsonl", "spec": spec, **data})
    fsio.atomic_write_json(run.config, config)
    return run


def argv(run: RunPaths, root: Path) -> list[str]:
    return [sys.executable, "-m", "autopilot.train.tasks.causal_lm", str(run.config.relative_to(root)),
            str(run.dir.relative_to(root))]


def metric_lines(run: RunPaths) -> list[dict]:
    return list(fsio.iter_jsonl(run.metrics))


def losses_by_step(run: RunPaths) -> dict[int, tuple[float, float]]:
    """step -> (loss, lr) of the last line logged for each step (a resumed run logs some steps twice)."""
    return {m["step"]: (m["loss"], m["lr"]) for m in metric_lines(run) if "loss" in m}
