"""How fast are dataset files checked? Records per second at each level, against a bare `json.loads` loop.

A chat_sft_v1 file of `--records` generated conversations (a system turn in a third of them, one to three
user/assistant exchanges of 5 to 120 words per turn, about 1.7 KB a record) is read by a bare loop
(`for line in f: json.loads(line)`) and then checked at levels quick, standard and deep exactly as
`autopilot validate` does. Each figure is the best of `--repeat` passes in this one process, so the ratios
compare like with like on whatever machine runs it. Ingest (check + copy + hash + verify + publish) of the same
file at level standard is timed once as well. Targets: standard within 3x of the bare parse, deep within 10x.

Usage:
    python benchmarks/validate_throughput.py            # 100,000 records, best of 3
    python benchmarks/validate_throughput.py --quick    # 2,000 records, one pass (smoke run for the tests)
The last line is one JSON object.
"""

from __future__ import annotations

import dataclasses
import json
import random
import tempfile
import time
from pathlib import Path

import click

from autopilot.ingest.checks import Level, Settings
from autopilot.ingest.inbox import check_file, ingest_inbox
from autopilot.ingest.specs import load_spec
from autopilot.paths import Project

WORDS = ("the model data train loss step batch token answer question value mean error rate learn layer weight "
         "gradient result sample input output test score file line record check level word text number").split()
TARGETS = {"standard_ratio_max": 3.0, "deep_ratio_max": 10.0}


def sentence(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(5, 120))
    return " ".join(words).capitalize() + rng.choice(".?!")


def conversation(rng: random.Random, i: int) -> dict:
    turns = [{"role": "system", "content": "You are a careful assistant."}] if i % 3 == 0 else []
    for _ in range(rng.randint(1, 3)):
        turns += [{"role": "user", "content": f"{sentence(rng)} (#{i})"},
                  {"role": "assistant", "content": sentence(rng)}]
    return {"id": f"bench-{i:06d}", "messages": turns}


def write_dataset(path: Path, records: int) -> int:
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as f:
        for i in range(records):
            f.write(json.dumps(conversation(rng, i), ensure_ascii=False) + "\n")
    return path.stat().st_size


def bare(path: Path) -> int:
    n = 0
    with path.open("rb") as f:
        for line in f:
            json.loads(line)
            n += 1
    return n


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def time_ingest(path: Path, root: Path, settings: Settings) -> float:
    project = Project(root)
    project.inbox.mkdir(parents=True)
    (project.inbox / path.name).write_bytes(path.read_bytes())
    t0 = time.perf_counter()
    [outcome] = ingest_inbox(project, settings, now=time.time() + 3600)
    seconds = time.perf_counter() - t0
    assert outcome.status == "accepted", outcome.detail
    return seconds


@click.command()
@click.option("--records", default=100_000, help="Conversations in the generated file.")
@click.option("--repeat", default=3, help="Passes per measurement; the best one counts.")
@click.option("--quick", is_flag=True, help="Smoke run: 2,000 records, one pass.")
def main(records: int, repeat: int, quick: bool) -> None:
    if quick:
        records, repeat = 2_000, 1
    spec = load_spec("chat_sft_v1")
    settings = Settings.from_config({"default_spec": "chat_sft_v1"})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        size = write_dataset(path, records)
        seconds = {"bare": best_of(repeat, lambda: bare(path))}
        for level in Level:
            level_settings = dataclasses.replace(settings, level=level)
            scan = check_file(path, spec, level_settings)
            assert scan.accepted and scan.records == records, scan.summary()
            seconds[level.name.lower()] = best_of(repeat, lambda: check_file(path, spec, level_settings))
        seconds["ingest_standard"] = time_ingest(path, Path(tmp) / "project", settings)
    for name, s in seconds.items():
        click.echo(f"{name:>16}: {records / s:>10,.0f} records/s  {s / seconds['bare']:5.2f}x bare", err=True)
    out = {
        "records": records, "bytes": size, "repeat": repeat, "quick": quick,
        **{f"{name}_rps": round(records / s) for name, s in seconds.items()},
        **{f"{name}_ratio": round(s / seconds["bare"], 2) for name, s in seconds.items() if name != "bare"},
        "targets": TARGETS,
    }
    out["meets_targets"] = (out["standard_ratio"] <= TARGETS["standard_ratio_max"]
                            and out["deep_ratio"] <= TARGETS["deep_ratio_max"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
