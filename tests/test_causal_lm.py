"""The causal-LM task on a tiny Qwen3 built locally: full and LoRA fine-tunes through the real loading path,
gradient accumulation, exact match, kill-and-resume, control files, NaN and out-of-memory."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from lm_helpers import (
    VAL_CHATS,
    VAL_COMPLETIONS,
    argv,
    losses_by_step,
    make_lm_project,
    metric_lines,  # noqa: F401  (the tiny_model_dir fixture)
    write_config,
    write_jsonl,
)
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from autopilot import fsio, schemas
from autopilot.errors import TrainerError
from autopilot.train import checkpoints, contract, supervisor
from autopilot.train.contract import TrainerRun
from autopilot.train.tasks import causal_lm, causal_lm_eval


@pytest.fixture(autouse=True)
def cold_start(monkeypatch):
    monkeypatch.setenv("AUTOPILOT_NO_WARMSTART", "1")  # trainers as fresh processes (see test_cnn_task.py)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """A tiny model gains nothing from threads, and on a shared CPU OpenMP threads waiting for each other make
    every step many times slower; one thread in-process and in trainer subprocesses (same numerics in both)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


def train_in_process(run, root) -> dict:
    return causal_lm.train(TrainerRun(fsio.read_json(run.config), root=root))


def untrained_val_loss(root, run) -> float:
    """val_loss of the model before any step (lr 0: the weights do not move)."""
    probe = write_config(root, {**fsio.read_json(run.config)["hparams"], "lr": 0.0, "max_steps": 1},
                         run_id="00099")
    return train_in_process(probe, root)["metric"]["value"]


def test_full_finetune_learns_and_leaves_a_loadable_model(tmp_path, tiny_model_dir):
    root = make_lm_project(tmp_path, tiny_model_dir)
    run = write_config(root, {"max_steps": 24, "save_every": 8})
    summary = train_in_process(run, root)
    schemas.validate(summary, "trainer_summary")
    assert summary["status"] == "completed" and summary["steps"] == 24
    values = summary["per_example"]["values"]
    assert summary["per_example"]["name"] == "val_loss" and summary["per_example"]["goal"] == "minimize"
    assert len(values) == 12 and summary["metric"]["value"] == pytest.approx(sum(values) / len(values))
    assert summary["metric"]["value"] < untrained_val_loss(root, run) - 0.5
    assert summary["metrics"]["perplexity"] > 1 and summary["tokens_per_second"] > 0
    assert summary["manifest"]["data_hash"] and summary["device"] == "cpu"
    final = root / summary["checkpoint"]
    assert final.name == "step-00000024"
    model = AutoModelForCausalLM.from_pretrained(final / "model", local_files_only=True)  # a usable model folder
    assert model.num_parameters() > 0 and (final / "model" / "tokenizer.json").exists()
    lrs = [m["lr"] for m in metric_lines(run) if "lr" in m]
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(3e-3) and lrs[-1] < lrs[len(lrs) // 2]  # warmup, decay


def test_lora_trains_only_the_adapters(tmp_path, tiny_model_dir):
    root = make_lm_project(tmp_path, tiny_model_dir)
    run = write_config(root, {"finetune": "lora", "lr": 2e-2, "max_steps": 24, "save_every": 12, "lora_r": 8,
                              "lora_alpha": 16, "lora_target_modules": "all-linear"})
    summary = train_in_process(run, root)
    assert summary["status"] == "completed"
    assert summary["metric"]["value"] < untrained_val_loss(root, run) - 0.3
    adapter = root / summary["checkpoint"] / "adapter"
    assert all("lora_" in k for k in load_file(adapter / "adapter_model.safetensors"))
    base = AutoModelForCausalLM.from_pretrained(root / "models" / "tiny-lm", local_files_only=True)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    tuned = PeftModel.from_pretrained(base, adapter)
    assert tuned.peft_config["default"].r == 8
    merged = tuned.merge_and_unload().state_dict()
    changed = {k for k in before if not torch.equal(before[k], merged[k])}
    assert changed and all(k.endswith("_proj.weight") for k in changed)  # linear layers only: no embedding, norm
    assert len(changed) == 2 * 7  # 2 layers x q, k, v, o, gate, up, down


def test_grad_accumulation_is_a_token_mean_over_the_whole_step(tmp_path, tiny_model_dir):
    root = make_lm_project(tmp_path, tiny_model_dir)
    one = write_config(root, {"batch_size": 4, "grad_accum": 1, "max_steps": 3}, run_id="00001")
    two = write_config(root, {"batch_size": 2, "grad_accum": 2, "max_steps": 3}, run_id="00002")
    train_in_process(one, root), train_in_process(two, root)
    a, b = losses_by_step(one), losses_by_step(two)
    for step in (1, 2, 3):  # the same 4 sequences per step, split in two micro-batches or not
        assert a[step][0] == pytest.approx(b[step][0], rel=1e-5)


def test_packing_lora_targets_and_gradient_checkpointing(tmp_path, tiny_model_dir):
    root = make_lm_project(tmp_path, tiny_model_dir)
    run = write_config(root, {"packing": True, "max_length": 32, "max_steps": 4, "finetune": "lora",
                              "lora_target_modules": "q_proj, v_proj"}, runtime={"activation_checkpointing": True})
    summary = train_in_process(run, root)
    assert summary["status"] == "completed"
    assert summary["metrics"]["train_sequences"] < 48  # 48 short chats packed into fewer 32-token sequences
    keys = load_file(root / summary["checkpoint"] / "adapter" / "adapter_model.safetensors")
    assert keys and all("q_proj" in k or "v_proj" in k for k in keys)
    assert all(v.abs().sum() > 0 for k, v in keys.items() if "lora_B" in k)  # trained through the recomputation


SYLLO = [{"puzzle": "Syllables: lot, pi\n1. someone who flies planes (2 syllables)", "answer": "pilot", "level": 1},
         {"puzzle": "Syllables: na, ba, na\n1. a long yellow fruit (3 syllables)", "answer": "banana", "level": 1}]


@pytest.mark.parametrize("spec, records", [("completion_v1", VAL_COMPLETIONS[:2]), ("syllo_v1", SYLLO)])
def test_exact_match_by_greedy_generation(tmp_path, tiny_model_dir, spec, records):
    """A model trained on its own validation answers (with a high rate) gets them all; an untrained one none."""
    root = make_lm_project(tmp_path, tiny_model_dir, val=records)
    write_jsonl(root / "data" / "memorize.jsonl", records * 8)
    hp = {"lr": 1e-2, "max_steps": 30, "batch_size": 4, "warmup_ratio": 0.0, "save_every": 100, "max_length": 160}
    run = write_config(root, hp, spec=spec, metric=("exact_match", "maximize"), train_file="data/memorize.jsonl")
    summary = train_in_process(run, root)
    assert summary["metric"]["name"] == "exact_match" and summary["per_example"]["goal"] == "maximize"
    assert summary["per_example"]["values"] == [1.0, 1.0]
    assert summary["metrics"]["val_loss"] < 0.1
    cold = write_config(root, {**hp, "lr": 0.0, "max_steps": 1}, run_id="00002", spec=spec,
                        train_file="data/memorize.jsonl")
    assert train_in_process(cold, root)["metrics"]["exact_match"] == 0.0


def test_per_example_loss_is_the_mean_over_answer_tokens(tiny_model_dir):
    """Batched, padded and sorted by length, each score equals the model's own loss on that example alone."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True)
    eval_set = causal_lm_eval.build_eval_set(tokenizer, VAL_CHATS, "chat_sft_v1", max_positions=256)
    calls = []
    losses, total, count = causal_lm_eval.example_losses(model, eval_set, tokenizer.pad_token_id,
                                                         torch.device("cpu"), progress=lambda: calls.append(1))
    assert len(calls) >= 1 and len(losses) == len(VAL_CHATS)
    with torch.no_grad():
        for example, loss in zip(eval_set.examples, losses, strict=True):
            alone = model(input_ids=torch.tensor([example.input_ids]), labels=torch.tensor([example.labels])).loss
            assert loss == pytest.approx(float(alone), rel=1e-4)
    assert count == sum(e.n_target for e in eval_set.examples)


def test_the_measurement_does_not_depend_on_the_hyperparameters(tmp_path, tiny_model_dir):
    """Sealed evaluation: with lr 0 (the model unchanged) max_length and batch size change nothing."""
    root = make_lm_project(tmp_path, tiny_model_dir)
    a = write_config(root, {"lr": 0.0, "max_steps": 1, "max_length": 28, "batch_size": 2}, run_id="00001")
    b = write_config(root, {"lr": 0.0, "max_steps": 1, "max_length": 128, "batch_size": 8}, run_id="00002")
    va, vb = (train_in_process(r, root)["per_example"]["values"] for r in (a, b))
    assert va == pytest.approx(vb, rel=1e-6)


# ---------------------------------------------------------------- resume

def test_resume_after_sigkill_continues_exactly(tmp_path, tiny_model_dir):
    """Killed after a checkpoint and started again, the run's losses and learning rates after the resume
    match an uninterrupted run's, step by step (LoRA with dropout: the random states are restored too)."""
    hp = {"finetune": "lora", "lr": 5e-3, "lora_dropout": 0.1, "max_steps": 30, "save_every": 5,
          "keep_checkpoints": 1}
    ref_root = make_lm_project(tmp_path / "ref", tiny_model_dir)
    ref = write_config(ref_root, hp)
    expected = train_in_process(ref, ref_root)

    root = make_lm_project(tmp_path / "killed", tiny_model_dir)
    run = write_config(root, hp)
    proc = subprocess.Popen(argv(run, root), cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not checkpoints.complete(run.checkpoint):
        assert time.monotonic() < deadline and proc.poll() is None, "no checkpoint before the trainer ended"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not run.summary.exists(), "the trainer finished before it could be killed"
    resumed_at = checkpoints.meta(checkpoints.latest(run.checkpoint))["step"]
    assert resumed_at < 30

    summary = supervisor.run_trainer(argv(run, root), run, fsio.read_json(run.config), root)
    assert summary["status"] == "completed" and summary["resumed_from_step"] == resumed_at
    assert any(m.get("event") == "resume" and m["step"] == resumed_at for m in metric_lines(run))
    want, got = losses_by_step(ref), losses_by_step(run)
    assert sorted(got) == list(range(1, 31))
    for step in range(resumed_at + 1, 31):
        assert got[step][1] == pytest.approx(want[step][1], rel=1e-9, abs=1e-12), f"lr differs at step {step}"
        assert got[step][0] == pytest.approx(want[step][0], rel=1e-5), f"loss differs at step {step}"
    assert summary["per_example"]["values"] == pytest.approx(expected["per_example"]["values"], rel=1e-5)


def test_full_finetune_resumes_from_a_stop_with_the_same_result(tmp_path, tiny_model_dir):
    hp = {"max_steps": 12, "save_every": 100}
    ref_root = make_lm_project(tmp_path / "ref", tiny_model_dir)
    expected = train_in_process(write_config(ref_root, hp), ref_root)

    root = make_lm_project(tmp_path / "stopped", tiny_model_dir)
    run = write_config(root, hp)
    trainer = TrainerRun(fsio.read_json(run.config), root=root)
    check_step = trainer.check_step

    def stop_at_5(step, loss):
        at = check_step(step, loss)
        if step == 5:
            trainer.end_reason = "stopped"
        return at
    trainer.check_step = stop_at_5
    stopped = causal_lm.train(trainer)
    assert stopped["status"] == "stopped" and stopped["metric"]["value"] is None
    assert stopped["checkpoint"].endswith("step-00000005")  # checkpointed on stop
    resumed = train_in_process(run, root)
    assert resumed["resumed_from_step"] == 5 and resumed["steps"] == 12
    assert resumed["per_example"]["values"] == pytest.approx(expected["per_example"]["values"], rel=1e-5)


# ---------------------------------------------------------------- control, heartbeat, failures

def test_stop_and_skip_end_the_run_within_a_step(tmp_path, tiny_model_dir):
    root = make_lm_project(tmp_path, tiny_model_dir)
    (root / "control").mkdir()
    for n, (signal_name, status) in enumerate((("stop", "stopped"), ("skip", "skipped")), start=1):
        (root / "control" / signal_name).touch()
        run = write_config(root, {"max_steps": 30}, run_id=f"0000{n}")
        summary = train_in_process(run, root)
        assert summary["status"] == status and summary["steps"] == 0
        assert summary["checkpoint"] is None  # nothing trained, nothing saved
        (root / "control" / signal_name).unlink(missing_ok=True)
    assert not (root / "control" / "skip").exists()  # a skip is used up by the run it skipped


def test_pause_holds_training_with_a_fresh_heartbeat(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(contract, "PAUSE_POLL_SECONDS", 0.05)
    root = make_lm_project(tmp_path, tiny_model_dir)
    (root / "control").mkdir()
    pause = root / "control" / "pause"
    pause.touch()
    run = write_config(root, {"max_steps": 8})
    result = {}
    worker = threading.Thread(target=lambda: result.update(summary=train_in_process(run, root)))
    worker.start()
    status_file = root / "status" / "status.json"
    beats = set()
    deadline = time.monotonic() + 60
    while len(beats) < 3:
        assert time.monotonic() < deadline, "no paused heartbeat"
        if status_file.exists():
            status = fsio.read_json(status_file)
            if status["phase"] == "paused":
                beats.add(status["heartbeat"])
        time.sleep(0.02)
    assert not [m for m in metric_lines(run) if "loss" in m]  # held before its first step
    pause.unlink()
    worker.join(60)
    assert result["summary"]["status"] == "completed" and result["summary"]["steps"] == 8


def test_status_has_what_the_monitor_shows_and_evaluation_heartbeats(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(contract, "HEARTBEAT_SECONDS", 0.0)
    root = make_lm_project(tmp_path, tiny_model_dir)
    run = write_config(root, {"max_steps": 4, "eval_every": 2})
    trainer = TrainerRun(fsio.read_json(run.config), root=root)
    seen = []
    original = fsio.atomic_write_json

    def spy(path, obj):
        if path == trainer.status_file:
            seen.append(dict(obj))
        original(path, obj)
    monkeypatch.setattr(fsio, "atomic_write_json", spy)
    causal_lm.train(trainer)
    train = [s for s in seen if s["phase"] == "train" and s.get("lr") is not None]
    assert train and {"run", "step", "total_steps", "loss", "lr", "tokens_per_second", "eta_seconds",
                      "heartbeat"} <= set(train[-1])
    assert train[-1]["total_steps"] == 4
    assert sum(s["phase"] == "evaluate" for s in seen) >= 3  # periodic and final evaluation beat per batch
    assert [m["step"] for m in metric_lines(run) if "val_loss" in m] == [2, 4]
    assert checkpoints.meta(checkpoints.latest(run.checkpoint))["metric"] is not None


def test_nan_loss_fails_the_run_at_once(tmp_path, tiny_model_dir):
    root = make_lm_project(tmp_path, tiny_model_dir)
    run = write_config(root, {"lr": 1e6, "max_grad_norm": 0.0, "warmup_ratio": 0.0, "max_steps": 50})
    with pytest.raises(SystemExit) as exit_info, TrainerRun(fsio.read_json(run.config), root=root) as trainer:
        causal_lm.train(trainer)
    assert exit_info.value.code == 1
    summary = fsio.read_json(run.summary)
    assert summary["status"] == "failed" and "diverged" in summary["error"]
    assert summary["steps"] < 10


def test_out_of_memory_is_reported_with_the_batch_size(tmp_path, tiny_model_dir, monkeypatch):
    root = make_lm_project(tmp_path, tiny_model_dir)
    run = write_config(root, {"batch_size": 4, "max_steps": 5})

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(causal_lm, "train_step", no_memory)
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "argv", ["causal_lm", str(run.config.relative_to(root)), "runs/lm/00001"])
    with pytest.raises(SystemExit) as exit_info:
        causal_lm.main()
    assert exit_info.value.code == 1
    summary = fsio.read_json(run.summary)
    assert summary["status"] == "oom" and "batch_size=4" in summary["error"]
    assert summary["error_detail"]["batch_size"] == 4 and summary["error_detail"]["step"] == 0


def test_a_missing_model_or_a_wrong_metric_fails_clearly(tmp_path, tiny_model_dir):
    root = make_lm_project(tmp_path, tiny_model_dir)
    run = write_config(root, metric=("val_accuracy", "maximize"))
    with pytest.raises(TrainerError, match="causal_lm task reports"):
        train_in_process(run, root)
    config = fsio.read_json(run.config)
    fsio.atomic_write_json(run.config, {**config, "metric": {"name": "val_loss", "goal": "minimize"},
                                        "init_model": "models/nowhere"})
    with pytest.raises(TrainerError, match="models/nowhere: no model folder"):
        train_in_process(run, root)
