"""Skill `syllo`: reassemble words from a shuffled bank of syllables, one word per numbered clue.

    Syllables: lot, na, ba, pi, na
    Form one word per clue, using every syllable once.
    1. a long curved fruit with a peel (3 syllables)
    2. someone who flies planes (2 syllables)
                                                    ->  banana, pilot

Levels by how many words a puzzle has and how long they are (LEVELS: words, fewest and most syllables), from one
two-syllable word (level 1) to six words of two to four syllables (level 10). The words, their syllables and
their clues are the bundled syllo_words.tsv (written for this package; no clue names a word of the list, so the
answer never appears in its puzzle, which ingest checks at level deep). Records are syllo_v1; the answer is the
words in clue order, lower case, joined by ", ", and the grader is exact after trimming.

Usage:
    records = generate(level=3, n=200, seed=7, exclude={r["answer"] for r in held_out})
    grade(records[0]["answer"], "banana, pilot")
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from importlib import resources

NAME = "syllo"
SPEC = "syllo_v1"
SOURCE = "autopilot.curriculum.syllo 1"
LEVELS = {1: (1, 2, 2), 2: (1, 3, 3), 3: (2, 2, 2), 4: (2, 2, 3), 5: (2, 3, 4), 6: (3, 2, 3), 7: (3, 3, 4),
          8: (4, 2, 4), 9: (5, 2, 4), 10: (6, 2, 4)}  # level: (words, fewest syllables, most syllables)
MAX_LEVEL = max(LEVELS)


@dataclass(frozen=True)
class Word:
    text: str
    syllables: tuple[str, ...]
    clue: str


@functools.cache
def words() -> tuple[Word, ...]:
    """The bundled word list: word, syllables (hyphenated), clue; tab-separated, `#` lines are comments."""
    text = resources.files("autopilot.curriculum").joinpath("syllo_words.tsv").read_text(encoding="utf-8")
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        word, split, clue = line.split("\t")
        syllables = tuple(split.split("-"))
        if "".join(syllables) != word:
            raise ValueError(f"syllo_words.tsv:{n}: the syllables {split!r} do not spell {word!r}")
        found.append(Word(word, syllables, clue))
    return tuple(found)


def pool(level: int) -> list[Word]:
    _, low, high = LEVELS[level]
    return [w for w in words() if low <= len(w.syllables) <= high]


def space(level: int) -> int:
    """How many distinct answers the level has (ordered choices of its words from its pool)."""
    count, _, _ = LEVELS[level]
    return math.perm(len(pool(level)), count)


def puzzle(chosen: list[Word], rng: random.Random) -> tuple[str, list[str]]:
    """The puzzle text and its shuffled syllable bank."""
    bank = [s for w in chosen for s in w.syllables]
    rng.shuffle(bank)
    clues = [f"{i}. {w.clue} ({len(w.syllables)} syllables)" for i, w in enumerate(chosen, 1)]
    text = "\n".join([f"Syllables: {', '.join(bank)}", "Form one word per clue, using every syllable once.", *clues])
    return text, bank


def record(level: int, index: int, chosen: list[Word], rng: random.Random) -> dict:
    text, bank = puzzle(chosen, rng)
    return {"id": f"{NAME}-L{level}-{index:06d}", "level": level, "puzzle": text,
            "answer": ", ".join(w.text for w in chosen), "syllables": bank, "source": SOURCE}


def generate(level: int, n: int, seed: int, exclude: frozenset[str] | set[str] = frozenset()) -> list[dict]:
    """`n` puzzles at `level`, none whose answer is in `exclude` (the level's held-out set); distinct answers
    while the level has enough left, then answers again with the syllables shuffled anew."""
    check_level(level)
    rng = random.Random(f"{NAME}:{level}:{seed}")
    count = LEVELS[level][0]
    candidates = pool(level)
    left = space(level) - len(exclude)
    seen: set[str] = set()
    out = []
    while len(out) < n:
        chosen = rng.sample(candidates, count)
        answer = ", ".join(w.text for w in chosen)
        if answer in exclude or (answer in seen and len(seen) < left):
            continue
        seen.add(answer)
        out.append(record(level, len(out), chosen, rng))
    return out


def key(rec: dict) -> str:
    """What makes two puzzles the same problem: held-out answers are never trained on."""
    return rec["answer"]


def answer(rec: dict) -> str:
    return rec["answer"].strip()


def grade(expected: str, output: str) -> bool:
    """Exact: the model's trimmed output is the answer (words in clue order, lower case, ", " between)."""
    return output.strip() == expected.strip()


def check_level(level: int) -> None:
    if level not in LEVELS:
        raise ValueError(f"syllo has levels 1 to {MAX_LEVEL}, not {level}")
