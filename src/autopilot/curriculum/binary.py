"""Skill `binary`: addition and subtraction of binary numbers, levels by operand magnitude.

    level 1  operands 1 to 10            101 + 11 =      ->  1000
    level 2  operands 10 to 100          1011010 - 110111 =   ->  100011
    level 3  100 to 1K, level 4  1K to 10K, level 5  10K to 100K

Records are completion_v1 (`prompt`, `completion`): the prompt is the problem ending in ` =`, the completion the
result after one space, so the model answers right after the equals sign. A subtraction never goes below zero.
The grader is exact: the trimmed output must be the trimmed answer (no leading zeros, no `0b`).

Usage:
    records = generate(level=2, n=200, seed=7, exclude={r["prompt"] for r in held_out})
    grade(records[0]["completion"], " 1000")      # True or False
"""

from __future__ import annotations

import random

NAME = "binary"
SPEC = "completion_v1"
SOURCE = "autopilot.curriculum.binary 1"
LEVELS = {1: (1, 10), 2: (10, 100), 3: (100, 1_000), 4: (1_000, 10_000), 5: (10_000, 100_000)}
MAX_LEVEL = max(LEVELS)
OPERATIONS = ("+", "-")


def problem(a: int, b: int, op: str) -> tuple[str, str]:
    """The prompt and the answer of `a op b` in binary."""
    result = a + b if op == "+" else a - b
    return f"{a:b} {op} {b:b} =", f"{result:b}"


def draw(rng: random.Random, level: int) -> tuple[str, str]:
    low, high = LEVELS[level]
    a, b, op = rng.randint(low, high), rng.randint(low, high), rng.choice(OPERATIONS)
    if op == "-" and b > a:
        a, b = b, a
    return problem(a, b, op)


def space(level: int) -> int:
    """How many distinct problems the level has (addition is counted in both operand orders, as drawn)."""
    low, high = LEVELS[level]
    n = high - low + 1
    return n * n + n * (n + 1) // 2


def record(level: int, index: int, prompt: str, answer: str) -> dict:
    return {"id": f"{NAME}-L{level}-{index:06d}", "prompt": prompt, "completion": f" {answer}"}


def generate(level: int, n: int, seed: int, exclude: frozenset[str] | set[str] = frozenset()) -> list[dict]:
    """`n` records at `level`, none whose prompt is in `exclude` (the level's held-out set); distinct while the
    level has enough problems left, then drawn again from them (level 1 has 155 in all)."""
    check_level(level)
    rng = random.Random(f"{NAME}:{level}:{seed}")
    left = space(level) - len(exclude)
    seen: set[str] = set()
    out = []
    while len(out) < n:
        prompt, answer = draw(rng, level)
        if prompt in exclude or (prompt in seen and len(seen) < left):
            continue
        seen.add(prompt)
        out.append(record(level, len(out), prompt, answer))
    return out


def key(rec: dict) -> str:
    """What makes two records the same problem: held-out problems are never trained on."""
    return rec["prompt"]


def answer(rec: dict) -> str:
    return rec["completion"].strip()


def grade(expected: str, output: str) -> bool:
    """Exact: the model's trimmed output is the answer."""
    return output.strip() == expected.strip()


def check_level(level: int) -> None:
    if level not in LEVELS:
        raise ValueError(f"binary has levels 1 to {MAX_LEVEL}, not {level}")
