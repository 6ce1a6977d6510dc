"""A study whose trainer is slow on purpose, for the tests of operating autopilot (control, daemon, cron, pages).

The trainer follows the contract with `steps` steps of `step_seconds` each, so that a test can pause, stop
or skip it mid-run; its metric is the share of `quality`-biased coin flips over 300 examples.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from helpers import make_project

from autopilot import fsio
from autopilot.ops.scaffold import QUICK_STUDY

SLOW_TRAINER = '''\
"""Test trainer: `steps` steps of `step_seconds` each, through the trainer contract."""
import time

import numpy as np

from autopilot.train.contract import TrainerRun

with TrainerRun.from_argv() as run:
    hp = run.hparams
    if run.config["run_id"] == hp.get("hang_run"):  # a trainer that hangs: the supervisor must kill it
        time.sleep(300)
    rng = np.random.default_rng(run.seed)
    run.begin_training(total_steps=hp["steps"])
    for step in range(1, hp["steps"] + 1):
        time.sleep(hp["step_seconds"])
        run.step(step, loss=2.0 / (1 + 0.1 * step))
        if run.should_end:
            break
    run.end_training()
    correct = (rng.random(300) < hp["quality"]).astype(float)
    run.finish(metric_value=correct.mean(), per_example=correct, per_example_name="correct")
'''


def make_slow_project(root: Path, steps: int = 20, step_seconds: float = 0.05, **overrides) -> Path:
    """A project whose study trains slow_trainer.py: steps x step_seconds per seed."""
    config = {
        "task": "command",
        "trainer": {"command": ["python", "slow_trainer.py", "{config}", "{run_dir}"]},
        "baseline": {"steps": steps, "step_seconds": step_seconds, "quality": 0.7},
        "search_space": {"quality": {"type": "float", "low": 0.5, "high": 0.9}},
        "judge": {**QUICK_STUDY["judge"], "noise_keys": []},
        **overrides,
    }
    make_project(root, **config)
    (root / "slow_trainer.py").write_text(SLOW_TRAINER)
    return root


def read_status(root: Path) -> dict | None:
    path = root / "status" / "status.json"
    try:
        return fsio.read_json(path)
    except Exception:
        return None


def wait_for(predicate, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def training(root: Path, run: str | None = None, min_step: int = 0, since: float = 0.0):
    """A predicate: the trainer (of `run`) is in phase train at step >= min_step, with a heartbeat after `since`
    (heartbeats come every 2 s)."""
    def check() -> bool:
        s = read_status(root)
        return bool(s and s["phase"] == "train" and (run is None or s["run"] == run) and s["step"] >= min_step
                    and s["heartbeat"] > since)
    return check


def history(root: Path, study: str = "digits_cnn") -> list[dict]:
    path = root / "runs" / study / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def entry(run_id: str, verdict: str, value: float | None, policy: str = "tpe", **fields) -> dict:
    """A history.jsonl line (valid against its schema) for a study made up in a test."""
    failed = verdict == "failed"
    judged = verdict not in ("baseline", "failed")
    e = {"run_id": run_id, "generation": None, "policy": policy, "overrides": {"lr": 0.01} if judged else {},
         "params": {"lr": 0.01}, "status": "failed" if failed else "completed", "verdict": verdict,
         "value": value, "seed_values": [] if value is None else [value],
         "compared_to": "00001" if judged else None, "delta": round(value - 0.8, 6) if judged and value else None,
         "interval": {"low": round(value - 0.82, 6), "high": round(value - 0.77, 6), "method": "pooled_t"}
         if judged and value else None,
         "train_seconds": 12.5, "wall_seconds": 13.0,
         "error": "Traceback (most recent call last):\nRuntimeError: CUDA error: boom" if failed else None,
         "fallback_from": None, "rationale": f"rationale of run {run_id}: try lr=0.01 because it may help",
         "finished_at": "2026-01-01T00:00:00+00:00"}
    e.update(fields)
    return e


def write_history(root: Path, entries: list[dict], study: str = "digits_cnn", curves: bool = True) -> None:
    """history.jsonl and, per run, a metrics.jsonl with a falling loss."""
    folder = root / "runs" / study
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "history.jsonl").open("w") as f:
        for e in entries:
            f.write(json.dumps(e) + "\n")
            if curves:
                run = folder / e["run_id"]
                run.mkdir(exist_ok=True)
                scale = 1 + int(e["run_id"]) / 10
                lines = [{"step": s, "time": s * 0.1, "loss": round(scale * 2.0 / (1 + 0.2 * s), 5)}
                         for s in range(1, 31)]
                (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))


# --- a real headless Chromium --------------------------------------------------------------------------------
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_binary() -> str:
    """Debian's chromium (bin/test installs it where apt is available); the test is skipped without one."""
    import shutil

    import pytest

    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium on PATH: `apt-get install chromium` (./bin/test does it where apt is available)")


def chromium(url: str, profile: Path, *, screenshot: Path | None = None, wait_ms: int = 4000,
             size: str = "1200,1800") -> str:
    """Load `url` in headless Chromium with no way out to the network; return the DOM after scripts ran."""
    import subprocess

    base = [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--user-data-dir={profile}", f"--window-size={size}", f"--virtual-time-budget={wait_ms}"]
    if screenshot is not None:
        subprocess.run([*base, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True)
    return subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout


class Dom:
    """The elements of a dumped DOM: tag, attributes and direct text, with lookups by id and class."""

    def __init__(self, html: str):
        from html.parser import HTMLParser

        self.elements: list[dict] = []
        stack: list[dict] = []
        elements = self.elements

        class Collector(HTMLParser):
            def handle_starttag(self, tag, attrs):
                for open_element in stack:  # cells and rows read as separate words
                    open_element["text"] += " "
                element = {"tag": tag, "attrs": dict(attrs), "text": ""}
                elements.append(element)
                if tag not in ("br", "img", "meta", "link", "input", "hr", "wbr", "source"):  # void: no end tag
                    stack.append(element)

            def handle_endtag(self, tag):
                if any(e["tag"] == tag for e in stack):
                    while stack.pop()["tag"] != tag:
                        pass

            def handle_data(self, data):
                for element in stack:
                    element["text"] += data

        Collector().feed(html)

    def by_id(self, element_id: str) -> dict:
        found = [e for e in self.elements if e["attrs"].get("id") == element_id]
        assert found, f"no element #{element_id}"
        return found[0]

    def text(self, element_id: str) -> str:
        return " ".join(self.by_id(element_id)["text"].split())

    def by_class(self, name: str, tag: str | None = None) -> list[dict]:
        return [e for e in self.elements if name in (e["attrs"].get("class") or "").split()
                and (tag is None or e["tag"] == tag)]
