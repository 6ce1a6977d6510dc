"""How often a local LLM's config proposal passes the guard: at its first answer, and with the repair loop.

    python benchmarks/llm_repair.py [--proposals 6] [--attempts 3]   # after ./bin/demo --llm (the llm-local extra)
    python benchmarks/llm_repair.py --quick                           # 2 proposals, 2 answers each at most

Starts `autopilot llm serve-local` (SmolLM2-135M-Instruct on llama.cpp, 127.0.0.1; or uses AUTOPILOT_LLM_BASE_URL),
makes a throw-away copy of the default digits study with four finished runs (autopilot.journal.synthetic), and asks
the worker for `--proposals` runs with llm.max_attempts = `--attempts`: a proposal the guard rejects goes back to the
worker with the guard's reasons. One run measures both sides: the first answers are exactly what max_attempts=1
would get (pass@1, the loop without repairs), and pass@k counts the runs whose proposal passed within k answers.
Prints one line per proposal, the rates, and one JSON object on the last line.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import click
import yaml

from autopilot.journal import record, synthetic
from autopilot.paths import Project
from autopilot.propose.decide import decide
from autopilot.propose.llm.audit import Audit
from autopilot.study import Study, check_config

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> tuple[str, subprocess.Popen | None]:
    if os.environ.get("AUTOPILOT_LLM_BASE_URL"):
        return os.environ["AUTOPILOT_LLM_BASE_URL"], None
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "autopilot", "llm", "serve-local", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(480):
        if proc.poll() is not None:
            sys.exit("autopilot llm serve-local exited: install the llm-local extra (pip install -e '.[llm-local]')")
        try:
            urllib.request.urlopen(f"{url}/models", timeout=1)
            return url, proc
        except OSError:
            time.sleep(0.5)
    sys.exit("the local LLM server did not answer within 240 s")


def make_study(root: Path, url: str, attempts: int) -> Study:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(policy="llm", llm={"base_url": url, "timeout_seconds": 300, "max_tokens": 400, "retries": 1,
                                     "max_attempts": attempts})
    study = Study(Project(root), check_config(config, "benchmark"))
    synthetic.write_runs(study, 4, seed=1)
    return study


@click.command()
@click.option("--proposals", default=6, show_default=True, help="Proposals asked of the worker.")
@click.option("--attempts", default=3, show_default=True, help="llm.max_attempts: answers per proposal at most.")
@click.option("--quick", is_flag=True, help="Smoke run: 2 proposals, 2 answers each at most.")
def main(proposals: int, attempts: int, quick: bool) -> None:
    """How often a local LLM's config proposal passes the guard, at its first answer and with the repair loop."""
    if quick:
        proposals, attempts = 2, 2
    url, server = start_server()
    outcomes = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            study = make_study(Path(tmp), url, attempts)
            history = record.current_history(study)
            for i in range(proposals):
                run_id = f"{5 + i:05d}"
                started = time.monotonic()
                proposal, _ = decide(study, run_id, history, Audit.for_run(study, run_id))
                answers = len(proposal.get("repairs", [])) + 1
                passed = proposal["fallback_from"] is None
                rules = [sorted({v["rule"] for v in r["violations"]}) for r in proposal.get("repairs", [])]
                if not passed:
                    rules.append(sorted({v["rule"] for v in proposal["fallback_from"]["violations"]}))
                outcomes.append({"run": run_id, "passed": passed, "answers": answers, "rejected_for": rules,
                                 "seconds": round(time.monotonic() - started, 1)})
                print(f"run {run_id}: {'passed' if passed else 'fell back'} after {answers} answer(s) "
                      f"in {outcomes[-1]['seconds']} s; rejected for {rules or 'nothing'}", flush=True)
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    n = len(outcomes)
    rates = {f"pass_at_{k}": sum(o["passed"] and o["answers"] <= k for o in outcomes) / n
             for k in range(1, attempts + 1)}
    reasons = Counter(rule for o in outcomes for rules in o["rejected_for"] for rule in rules)
    print(f"first answer passed the guard: {rates['pass_at_1']:.0%} of {n} (what max_attempts=1 gets); "
          f"within {attempts} answers: {rates[f'pass_at_{attempts}']:.0%}")
    print(json.dumps({"benchmark": "llm_repair", "model": "SmolLM2-135M-Instruct" if server else url,
                      "proposals": n, "max_attempts": attempts, **rates, "rejections_by_rule": dict(reasons),
                      "outcomes": outcomes}))


if __name__ == "__main__":
    main()
