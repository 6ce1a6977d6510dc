"""The curriculum's skill generators: levels, exact answers, exact graders, the bundled word list, and generated
files that ingest accepts at level deep like any other file."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from continual_helpers import write_jsonl

from autopilot.curriculum import SKILLS, binary, syllo
from autopilot.ingest.checks import Settings
from autopilot.ingest.inbox import check_file
from autopilot.ingest.specs import load_spec


@pytest.mark.parametrize("level", sorted(binary.LEVELS))
def test_binary_problems_are_right_and_within_their_level(level):
    low, high = binary.LEVELS[level]
    records = binary.generate(level, 300, seed=3)
    assert len({r["prompt"] for r in records}) == min(300, binary.space(level))  # distinct while the level has some
    for r in records:
        a, op, b, eq = r["prompt"].split()
        x, y = int(a, 2), int(b, 2)
        assert eq == "=" and low <= x <= high and low <= y <= high
        expected = x + y if op == "+" else x - y
        assert expected >= 0 and r["completion"] == f" {expected:b}" and binary.answer(r) == f"{expected:b}"
    assert records == binary.generate(level, 300, seed=3)  # a seed gives the same records
    assert records != binary.generate(level, 300, seed=4)


def test_binary_levels_span_one_to_ten_up_to_ten_thousand_to_a_hundred_thousand():
    assert binary.LEVELS[1] == (1, 10) and binary.LEVELS[binary.MAX_LEVEL] == (10_000, 100_000)
    assert [binary.LEVELS[k][0] for k in sorted(binary.LEVELS)] == [1, 10, 100, 1_000, 10_000]


def test_binary_level_one_is_small_so_a_batch_leaves_out_the_held_out_problems_and_repeats_the_rest():
    held = {r["prompt"] for r in binary.generate(1, 40, seed="held-out")}
    batch = binary.generate(1, 400, seed=1, exclude=held)
    assert not held & {r["prompt"] for r in batch}
    assert len({r["prompt"] for r in batch}) == binary.space(1) - len(held) == 115  # every other problem, then again


def test_graders_are_exact():
    assert binary.grade("1000", " 1000 ") and not binary.grade("1000", "01000") and not binary.grade("1000", "100")
    assert syllo.grade("banana, pilot", "banana, pilot\n")
    assert not syllo.grade("banana, pilot", "Banana, pilot") and not syllo.grade("banana, pilot", "pilot, banana")


def test_the_word_list_spells_its_words_and_no_clue_names_a_word_of_it():
    words = syllo.words()
    names = {w.text for w in words}
    assert len(names) == len(words) >= 100
    assert Counter(len(w.syllables) for w in words)[4] >= 20  # enough long words for the top levels
    for w in words:
        assert "".join(w.syllables) == w.text and w.text.islower()
        assert not set(re.findall(r"[a-z]+", w.clue.lower())) & names, w
        assert not set(w.syllables) & names  # a syllable is never a whole answer word


@pytest.mark.parametrize("level", sorted(syllo.LEVELS))
def test_syllo_puzzles_hold_exactly_the_syllables_of_their_answer(level):
    count, low, high = syllo.LEVELS[level]
    by_name = {w.text: w for w in syllo.words()}
    for r in syllo.generate(level, 50, seed=2):
        words = r["answer"].split(", ")
        assert len(words) == len(set(words)) == count and r["level"] == level
        assert all(low <= len(by_name[w].syllables) <= high for w in words)
        assert Counter(r["syllables"]) == Counter(s for w in words for s in by_name[w].syllables)
        bank, rule, *clues = r["puzzle"].split("\n")
        assert bank == "Syllables: " + ", ".join(r["syllables"]) and "every syllable once" in rule
        assert clues == [f"{i}. {by_name[w].clue} ({len(by_name[w].syllables)} syllables)"
                         for i, w in enumerate(words, 1)]


def test_syllo_levels_grow_by_words_and_length():
    ladder = [syllo.LEVELS[k] for k in sorted(syllo.LEVELS)]
    assert ladder[0] == (1, 2, 2) and len(ladder) == 10
    assert [w for w, _, _ in ladder] == sorted(w for w, _, _ in ladder)  # never fewer words one level up
    assert all(syllo.space(k) >= 2 for k in syllo.LEVELS)


@pytest.mark.parametrize(("skill", "level"), [("binary", 1), ("binary", 5), ("syllo", 1), ("syllo", 10)])
def test_generated_files_pass_ingest_at_level_deep(tmp_path, skill, level):
    module = SKILLS[skill]
    path = write_jsonl(tmp_path / f"{skill}.jsonl", module.generate(level, 120, seed=5))
    scan = check_file(path, load_spec(module.SPEC), Settings.from_config({"level": "deep"}, tmp_path))
    assert scan.accepted and not scan.errors, scan.summary()
    if skill == "syllo":  # an error for syllo_v1; binary's `10 - 1 = 1` holds its answer, a warning of completion_v1
        assert "answer_leak" not in scan.totals


def test_a_level_outside_the_ladder_is_refused_with_the_range():
    with pytest.raises(ValueError, match="levels 1 to 5"):
        binary.generate(6, 1, seed=0)
    with pytest.raises(ValueError, match="levels 1 to 10"):
        syllo.generate(0, 1, seed=0)
