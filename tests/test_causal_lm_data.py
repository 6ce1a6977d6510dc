"""The causal-LM data layer: loss masks per spec and template, packing, the deterministic batch stream."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from autopilot.errors import TrainerError
from autopilot.train import lm_data
from autopilot.train.lm_data import IGNORE

CHAT = {"messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4."},
                     {"role": "user", "content": "And 3 + 3?"}, {"role": "assistant", "content": "6."}]}


@pytest.fixture
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)


def learned(tokenizer, example: lm_data.Example) -> str:
    return tokenizer.decode([t for t in example.labels if t != IGNORE])


def test_chat_loss_is_on_every_assistant_turn_and_its_end_token_only(tokenizer):
    end = lm_data.turn_end(tokenizer)
    assert end == "<|im_end|>"
    example = lm_data.encode(tokenizer, CHAT, "chat_sft_v1", end)
    assert learned(tokenizer, example) == "4.<|im_end|>6.<|im_end|>"
    assert len(example.input_ids) == len(example.labels)
    assert tokenizer.decode(example.input_ids) == lm_data.render(tokenizer, CHAT["messages"])


def test_a_tokenizer_without_a_template_gets_the_documented_default(tokenizer):
    tokenizer.chat_template = None
    lm_data.ensure_chat_template(tokenizer)
    assert tokenizer.chat_template == lm_data.DEFAULT_CHAT_TEMPLATE
    end = lm_data.turn_end(tokenizer)
    assert end == tokenizer.eos_token
    example = lm_data.encode(tokenizer, CHAT, "chat_sft_v1", end)
    assert learned(tokenizer, example) == f"4.{end}6.{end}"
    assert "<|assistant|>\n4." in tokenizer.decode(example.input_ids)


def test_completion_and_syllo_records(tokenizer):
    end = lm_data.turn_end(tokenizer)
    completion = lm_data.encode(tokenizer, {"prompt": "2+2=", "completion": "4"}, "completion_v1", end)
    assert learned(tokenizer, completion) == "4" + tokenizer.eos_token
    assert tokenizer.decode(completion.input_ids) == "2+2=4" + tokenizer.eos_token
    syllo = {"puzzle": "Syllables: lot, pi\n1. someone who flies planes", "answer": "pilot", "level": 1}
    assert learned(tokenizer, lm_data.encode(tokenizer, syllo, "syllo_v1", end)) == "pilot<|im_end|>"


def test_examples_cut_to_max_length_without_an_answer_are_left_out(tokenizer):
    short = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    limit = len(lm_data.encode(tokenizer, short, "chat_sft_v1", lm_data.turn_end(tokenizer)))
    examples = lm_data.encode_all(tokenizer, [CHAT, short], "chat_sft_v1", max_length=limit)
    assert len(examples) == 1 and len(examples[0]) == limit and examples[0].n_target > 0
    with pytest.raises(TrainerError, match="no training example"):
        lm_data.encode_all(tokenizer, [CHAT], "chat_sft_v1", max_length=limit)


def doc(first: int, n: int) -> lm_data.Example:
    """n tokens first, first+1, ...; every token but the first is a target."""
    ids = list(range(first, first + n))
    return lm_data.Example(ids, [IGNORE] + ids[1:])


def test_pack_keeps_each_example_whole_in_rows_that_fit():
    examples = [doc(100 * i, n) for i, n in enumerate([3, 1, 4, 2, 2, 3, 1])]  # 16 tokens
    rows = lm_data.pack(examples, 4)
    assert len(rows) == 4 and all(len(r) == 4 for r in rows)  # best fit: no room wasted here
    found = []
    for row in rows:
        assert sum(row.documents) == len(row)
        at = 0
        for n in row.documents:
            found.append(row.input_ids[at:at + n])
            assert row.labels[at] == IGNORE and row.labels[at + 1:at + n] == row.input_ids[at + 1:at + n]
            at += n
    assert sorted(found) == sorted(e.input_ids for e in examples)  # each example once, never split
    assert lm_data.pack(examples, 4) == rows  # deterministic
    with pytest.raises(ValueError, match="longer than 3"):
        lm_data.pack(examples, 3)


def test_packed_rows_restart_positions_per_document_and_have_no_mask():
    rows = lm_data.pack([doc(10, 3), doc(20, 2), doc(30, 4)], 6)
    assert [r.documents for r in rows] == [(4, 2), (3,)]
    batch = lm_data.collate(rows, pad_id=0, width=6)
    assert "attention_mask" not in batch  # the model masks by documents, from the position ids
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1], [0, 1, 2, 0, 1, 2]]  # padding: a document too
    assert batch["input_ids"].tolist() == [[30, 31, 32, 33, 20, 21], [10, 11, 12, 0, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 31, 32, 33, IGNORE, 21], [IGNORE, 11, 12, IGNORE, IGNORE, IGNORE]]
    flat = lm_data.collate(rows, pad_id=0, width=6, flatten=True)
    assert {k: v.tolist() for k, v in flat.items()} == {k: [sum(v.tolist(), [])] for k, v in batch.items()}


def test_collate_pads_right_and_ignores_padding():
    batch = lm_data.collate([lm_data.Example([1, 2, 3], [IGNORE, 2, 3]), lm_data.Example([4], [4])], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 2, 3], [4, IGNORE, IGNORE]]


def test_the_batch_stream_depends_only_on_seed_and_position():
    examples = [lm_data.Example([i], [i]) for i in range(10)]
    a, b = lm_data.MicroBatches(examples, 3, seed=5), lm_data.MicroBatches(examples, 3, seed=5)
    stream = [[e.input_ids[0] for e in a[g]] for g in range(8)]
    assert [[e.input_ids[0] for e in b[g]] for g in reversed(range(8))] == stream[::-1]  # any order of access
    assert a.per_epoch == 4 and sorted(sum(stream[:4], [])) == list(range(10))  # each example once an epoch
    assert stream[:4] != stream[4:8]  # a new order every epoch
    assert [[e.input_ids[0] for e in lm_data.MicroBatches(examples, 3, seed=6)[g]] for g in range(4)] != stream[:4]


def test_a_template_that_does_not_render_the_content_is_refused(tokenizer):
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: [redacted]\n{% endfor %}"
    with pytest.raises(TrainerError, match="verbatim"):
        lm_data.encode(tokenizer, CHAT, "chat_sft_v1", None)
