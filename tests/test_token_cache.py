"""Tokenization once per dataset and tokenizer: hits, misses on a changed tokenizer or file, damage, pruning."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from lm_helpers import TRAIN_CHATS, make_lm_project, write_config, write_jsonl
from transformers import AutoTokenizer

from autopilot import fsio
from autopilot.paths import Project
from autopilot.train import lm_data, token_cache
from autopilot.train.contract import TrainerRun
from autopilot.train.tasks import causal_lm


@pytest.fixture
def setup(tmp_path, tiny_model_dir):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    data = write_jsonl(tmp_path / "train.jsonl", TRAIN_CHATS)
    return tmp_path / "cache", model_dir, data


def load(cache, model_dir, data):
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    return token_cache.encoded(cache, tokenizer, model_dir, data, "chat_sft_v1")


@pytest.fixture
def count_encodes(monkeypatch):
    calls = []
    encode = lm_data.encode_records

    def counted(*args, **kwargs):
        calls.append(1)
        return encode(*args, **kwargs)
    monkeypatch.setattr(lm_data, "encode_records", counted)
    return calls


def test_a_dataset_is_tokenized_once(setup, count_encodes):
    cache, model_dir, data = setup
    first = load(cache, model_dir, data)
    again = load(cache, model_dir, data)
    assert len(count_encodes) == 1 and again == first and len(list(cache.glob("*.npz"))) == 1
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    assert first == lm_data.encode_records(tokenizer, TRAIN_CHATS, "chat_sft_v1")  # the same examples, uncut


def test_a_changed_tokenizer_or_file_tokenizes_again(setup, count_encodes):
    cache, model_dir, data = setup
    load(cache, model_dir, data)
    config = model_dir / "tokenizer_config.json"
    changed = json.loads(config.read_text())
    changed["chat_template"] = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}<|im_end|>\n{% endfor %}"
    config.write_text(json.dumps(changed))
    (model_dir / "chat_template.jinja").unlink(missing_ok=True)  # where newer transformers keep the template
    retemplated = load(cache, model_dir, data)
    assert len(count_encodes) == 2
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    assert "[assistant]" in tokenizer.decode(retemplated[0].input_ids)
    write_jsonl(data, TRAIN_CHATS[:10])
    assert len(load(cache, model_dir, data)) == 10 and len(count_encodes) == 3
    (model_dir / "model.safetensors").write_bytes(b"other weights")  # weights are no part of the key
    load(cache, model_dir, data)
    assert len(count_encodes) == 3
    assert len(list(cache.glob("*.npz"))) == 3


def test_a_damaged_entry_is_tokenized_again(setup, count_encodes, caplog):
    cache, model_dir, data = setup
    first = load(cache, model_dir, data)
    entry = next(cache.glob("*.npz"))
    entry.write_bytes(entry.read_bytes()[:100])
    assert load(cache, model_dir, data) == first and len(count_encodes) == 2
    assert "unreadable" in caplog.text


def test_only_the_most_recently_used_entries_are_kept(tmp_path):
    for i in range(5):
        (tmp_path / f"{i}.npz").write_bytes(b"x")
        os.utime(tmp_path / f"{i}.npz", (1000 + i, 1000 + i))
    os.utime(tmp_path / "0.npz")  # used just now
    token_cache.prune(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.npz", "4.npz"]


def test_runs_of_a_study_share_the_tokens(tmp_path, tiny_model_dir, count_encodes):
    root = make_lm_project(tmp_path, tiny_model_dir)
    for run_id in ("00001", "00002"):
        run = write_config(root, {"max_steps": 1, "max_length": 32 if run_id == "00001" else 48}, run_id=run_id)
        assert causal_lm.train(TrainerRun(fsio.read_json(run.config), root=root))["status"] == "completed"
    assert len(count_encodes) == 1  # max_length cuts after the cache
    assert len(list(Project(root).token_cache.glob("*.npz"))) == 1
