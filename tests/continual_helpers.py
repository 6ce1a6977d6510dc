"""Helpers of the continual-mode tests: a tiny model whose tokenizer knows binary numbers, a continual study in a
throw-away project, level-1 binary problems split into files."""

from __future__ import annotations

import json
import random
from pathlib import Path

from helpers import make_project

from autopilot.curriculum import binary
from autopilot.paths import Project
from autopilot.study import Study
from autopilot.train import lm_tiny

STUDY = "cont"
SIZE = {"hidden": 32, "layers": 2, "heads": 4, "kv_heads": 2, "max_positions": 256}
BASELINE = {"finetune": "full", "lr": 0.005, "batch_size": 16, "epochs": 8, "max_length": 48, "save_every": 1000,
            "warmup_ratio": 0.1, "keep_checkpoints": 1}


def level_one_problems() -> list[tuple[str, str]]:
    """Every problem of binary level 1 (155), in a fixed shuffled order."""
    rng = random.Random(0)
    problems = sorted({binary.draw(rng, 1) for _ in range(20_000)})
    random.Random(1).shuffle(problems)
    assert len(problems) == binary.space(1)
    return problems


def completions(problems: list[tuple[str, str]]) -> list[dict]:
    return [{"prompt": p, "completion": f" {a}"} for p, a in problems]


def shuffled_answers(problems: list[tuple[str, str]], seed: int = 1) -> list[tuple[str, str]]:
    """The same prompts with the answers shuffled among them: a harmful dataset that looks valid."""
    answers = [a for _, a in problems]
    random.Random(seed).shuffle(answers)
    return [(p, a) for (p, _), a in zip(problems, answers, strict=True)]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def build_binary_model(folder: Path) -> Path:
    """The tiny Qwen3 of the LM tests with a tokenizer trained on binary arithmetic (and chat) text."""
    texts = [p + " " + a for p, a in level_one_problems()]
    texts += [r["prompt"] + r["completion"] for r in binary.generate(2, 200, seed=0)]
    return lm_tiny.build_tiny_lm(folder, texts + lm_tiny.corpus(lm_tiny.synthetic_chat(50)), vocab_size=384, **SIZE)


def continual_config(**changes) -> dict:
    """A continual causal_lm study on queued completion_v1 files, judged on data/val.jsonl."""
    return {"study": STUDY, "task": "causal_lm", "mode": "continual", "iterations": 1,
            "metric": {"name": "val_loss", "goal": "minimize"}, "model": {"path": "models/tiny-lm"},
            "data": {"source": "queue", "val_file": "data/val.jsonl", "spec": "completion_v1"},
            "baseline": dict(BASELINE), "search_space": {"lr": {"type": "float", "low": 0.002, "high": 0.01}},
            "ingest": {"default_spec": "completion_v1", "settle_seconds": 0}, "retention": {"keep_last_runs": 3},
            **changes}


def make_continual_project(root: Path, model_dir: Path, val: list[dict], **changes) -> Path:
    import shutil

    make_project(root, **continual_config(**changes))
    shutil.copytree(model_dir, root / "models" / "tiny-lm")
    write_jsonl(root / "data" / "val.jsonl", val)
    return root


def load_study(root: Path) -> Study:
    study = Study.load(Project(root), root / "config" / "config.yaml")
    study.freeze()
    return study

