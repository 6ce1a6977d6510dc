"""The causal-LM task on a CUDA GPU: bf16 full and LoRA fine-tunes, resume, a real out-of-memory.

Skipped unless AUTOPILOT_GPU_TESTS=1 (and a CUDA device is there): `AUTOPILOT_GPU_TESTS=1 pytest -m gpu`.
"""

from __future__ import annotations

import os

import pytest
import torch
from lm_helpers import TRAIN_CHATS, argv, make_lm_project, write_config

from autopilot import fsio
from autopilot.train import lm_runtime, lm_tiny, supervisor
from autopilot.train.contract import TrainerRun
from autopilot.train.tasks import causal_lm

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(os.environ.get("AUTOPILOT_GPU_TESTS") != "1" or not torch.cuda.is_available(),
                       reason="GPU tests run with AUTOPILOT_GPU_TESTS=1 on a machine with CUDA"),
]


def train(run, root) -> dict:
    return causal_lm.train(TrainerRun(fsio.read_json(run.config), root=root))


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_fine_tunes_in_bf16_on_the_gpu(tmp_path, tiny_model_dir, finetune):
    root = make_lm_project(tmp_path, tiny_model_dir)
    rt = lm_runtime.resolve(None, finetune)
    assert rt.device.type == "cuda" and rt.precision == "bf16_autocast" and rt.compile
    run = write_config(root, {"finetune": finetune, "lr": 1e-2, "max_steps": 20, "save_every": 5})
    summary = train(run, root)
    assert summary["status"] == "completed" and summary["device"].startswith("cuda")
    assert summary["peak_memory_mb"] > 0 and summary["tokens_per_second"] > 0
    first = next(m["loss"] for m in fsio.iter_jsonl(run.metrics) if "loss" in m)
    assert summary["metrics"]["train_loss"] < first


def test_resumes_on_the_gpu_close_to_an_uninterrupted_run(tmp_path, tiny_model_dir):
    hp = {"finetune": "lora", "lr": 5e-3, "max_steps": 12, "save_every": 100}
    ref_root = make_lm_project(tmp_path / "ref", tiny_model_dir)
    expected = train(write_config(ref_root, hp), ref_root)
    root = make_lm_project(tmp_path / "stopped", tiny_model_dir)
    run = write_config(root, hp)
    trainer = TrainerRun(fsio.read_json(run.config), root=root)
    check_step = trainer.check_step

    def stop_at_6(n, loss):
        at = check_step(n, loss)
        trainer.end_reason = "stopped" if n == 6 else None
        return at
    trainer.check_step = stop_at_6
    assert causal_lm.train(trainer)["status"] == "stopped"
    resumed = train(run, root)
    assert resumed["resumed_from_step"] == 6
    # bf16 kernels are not bitwise deterministic: close, not equal
    assert resumed["metric"]["value"] == pytest.approx(expected["metric"]["value"], rel=1e-2)


def test_cuda_out_of_memory_is_reported_with_the_batch_size(tmp_path, tiny_model_dir, monkeypatch):
    """A real OOM: a 2^24-token output layer makes the logits of one micro-batch larger than the GPU."""
    root = make_lm_project(tmp_path, tiny_model_dir)
    lm_tiny.build_tiny_lm(root / "models" / "huge-vocab", lm_tiny.corpus(TRAIN_CHATS), vocab_size=384,
                          model_vocab_size=2**24,
                          hidden=32, layers=1, heads=4, kv_heads=2, max_positions=256)
    run = write_config(root, {"batch_size": 6, "max_length": 256, "packing": True, "max_steps": 2})
    config = fsio.read_json(run.config)
    fsio.atomic_write_json(run.config, {**config, "init_model": "models/huge-vocab"})
    monkeypatch.setenv("AUTOPILOT_NO_WARMSTART", "1")
    summary = supervisor.run_trainer(argv(run, root), run, fsio.read_json(run.config), root)
    assert summary["status"] == "oom", summary["error"]
    assert summary["error_detail"]["batch_size"] == 6 and "batch_size=6" in summary["error"]


GPU_HP = {"finetune": "full", "lr": 3e-3, "max_steps": 6, "packing": True, "max_length": 64, "save_every": 100}
GPU_REFERENCE = {"precision": "bf16_autocast", "attention": "sdpa", "compile": False}


def step_losses(run) -> list[float]:
    return [m["loss"] for m in fsio.iter_jsonl(run.metrics) if "loss" in m]


@pytest.mark.parametrize("change", [{"compile": True}, {"precision": "bf16_pure"}, {"precision": "fp32"},
                                    {"activation_checkpointing": True}])
def test_each_setting_trains_to_the_losses_of_eager_autocast_on_the_gpu(tmp_path, tiny_model_dir, change):
    root = make_lm_project(tmp_path, tiny_model_dir)
    reference = write_config(root, GPU_HP, run_id="00001", runtime=GPU_REFERENCE)
    changed = write_config(root, GPU_HP, run_id="00002", runtime={**GPU_REFERENCE, **change})
    train(reference, root)
    summary = train(changed, root)
    assert summary["status"] == "completed" and summary["runtime"]["compile_error"] is None
    assert summary["runtime"]["compiled"] == change.get("compile", False)
    assert step_losses(changed) == pytest.approx(step_losses(reference), rel=3e-2)


@pytest.mark.skipif(not lm_runtime.flash_attention_available(), reason="flash-attn is not installed")
def test_flash_attention_keeps_packed_documents_apart(tmp_path, tiny_model_dir):
    """Packed rows go to flash-attention end to end (varlen over the position ids): the loss equals sdpa's."""
    root = make_lm_project(tmp_path, tiny_model_dir)
    losses = []
    for run_id, attention in (("00001", "sdpa"), ("00002", "flash_attention_2")):
        run = write_config(root, GPU_HP, run_id=run_id, runtime={**GPU_REFERENCE, "attention": attention})
        assert train(run, root)["runtime"]["attention"] == attention
        losses.append(step_losses(run))
    assert losses[1] == pytest.approx(losses[0], rel=3e-2)
