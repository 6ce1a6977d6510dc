"""The causal_lm hardware settings on CPU: each trains the tiny model to the losses of eager fp32 within its
rounding; packed documents do not see each other; bf16 master weights keep small updates; a failed
compilation falls back to eager and says why."""

from __future__ import annotations

import functools
import itertools

import pytest
import torch
from lm_helpers import losses_by_step, make_lm_project, write_config
from transformers import AutoModelForCausalLM

from autopilot import fsio, schemas
from autopilot.errors import TrainerError
from autopilot.train import lm_data, lm_runtime
from autopilot.train.contract import TrainerRun
from autopilot.train.lm_data import IGNORE, Example
from autopilot.train.tasks import causal_lm

HP = {"max_steps": 5, "save_every": 100, "lr": 3e-3, "batch_size": 4, "max_length": 64, "packing": True}
REFERENCE = {"precision": "fp32", "attention": "eager", "adamw": "for_loop", "compile": False}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same numerics run to run, and no OpenMP contention on a shared CPU
    yield
    torch.set_num_threads(threads)


RUN_IDS = (f"{n:05d}" for n in itertools.count(1))  # a fresh run folder for each training of the module


def train(root, runtime: dict, **hparams) -> tuple[dict, dict[int, float]]:
    run = write_config(root, {**HP, **hparams}, run_id=next(RUN_IDS), runtime=runtime)
    summary = causal_lm.train(TrainerRun(fsio.read_json(run.config), root=root))
    assert summary["status"] == "completed", summary["error"]
    return summary, {step: loss for step, (loss, _) in losses_by_step(run).items()}


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model_dir):
    return make_lm_project(tmp_path_factory.mktemp("runtime"), tiny_model_dir)


@pytest.fixture(scope="module")
def reference(project) -> dict[int, float]:
    """Per-step training losses of eager attention, fp32, a plain AdamW loop, not compiled."""
    return train(project, REFERENCE)[1]


@pytest.mark.parametrize("change, rel", [
    ({"attention": "sdpa"}, 1e-5),
    ({"adamw": "foreach"}, 1e-5),
    ({"adamw": "fused"}, 1e-5),
    ({"activation_checkpointing": True}, 1e-6),
    ({"precision": "bf16_autocast"}, 3e-2),
    ({"precision": "bf16_pure"}, 3e-2),
])
def test_each_setting_trains_to_the_losses_of_eager_fp32(project, reference, change, rel):
    summary, losses = train(project, {**REFERENCE, **change})
    assert summary["runtime"] == {**REFERENCE, **change, "device": "cpu", "compiled": False, "compile_error": None,
                                  "activation_checkpointing": change.get("activation_checkpointing", False)}
    assert losses.keys() == reference.keys()
    for step, loss in reference.items():
        assert losses[step] == pytest.approx(loss, rel=rel), step
    assert losses[5] < losses[1] - 0.15  # and it learns: the comparison is not between two flat lines


@pytest.mark.slow
def test_compiled_training_has_the_losses_of_eager(project, reference):
    """torch.compile (inductor, C++ on CPU); the first compilation of the tiny model takes ~30 s."""
    summary, losses = train(project, {**REFERENCE, "compile": True})
    assert summary["runtime"]["compiled"] is True and summary["runtime"]["compile_error"] is None
    for step, loss in reference.items():
        assert losses[step] == pytest.approx(loss, rel=1e-4), step


def test_a_failed_compilation_trains_eager_and_says_why(project, reference, monkeypatch):
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=broken_backend))
    summary, losses = train(project, {**REFERENCE, "compile": True})
    schemas.validate(summary, "trainer_summary")
    assert summary["runtime"]["compile"] is True and summary["runtime"]["compiled"] is False
    assert "no C++ compiler here" in summary["runtime"]["compile_error"]
    assert losses == pytest.approx(reference, rel=1e-6)  # the failed step was trained again, eagerly


def test_the_defaults_on_cpu_and_the_unknown_settings():
    rt = lm_runtime.resolve(None, "full", torch.device("cpu"))
    assert (rt.precision, rt.attention, rt.adamw, rt.compile, rt.weights) == ("fp32", "sdpa", "fused", False,
                                                                              torch.float32)
    pure = lm_runtime.resolve({"precision": "bf16_pure", "compile": True}, "lora", torch.device("cpu"))
    assert pure.weights == torch.bfloat16 and pure.master_weights and pure.compile
    assert lm_runtime.resolve({"precision": "bf16_autocast"}, "lora", torch.device("cpu")).weights == torch.bfloat16
    if not lm_runtime.flash_attention_available():
        with pytest.raises(TrainerError, match="flash-attn package is not installed"):
            lm_runtime.resolve({"attention": "flash_attention_2"}, "full", torch.device("cpu"))


def test_a_setting_in_the_baseline_is_pointed_to_its_section():
    with pytest.raises(TrainerError, match="compile: settings of the study's causal_lm section"):
        causal_lm.TrainConfig.from_hparams({"compile": True})
    with pytest.raises(TrainerError, match="causal_lm.activation_checkpointing"):
        causal_lm.TrainConfig.from_hparams({"gradient_checkpointing": True})
    with pytest.raises(TrainerError, match="unknown causal_lm hyperparameter.*lerning_rate"):
        causal_lm.TrainConfig.from_hparams({"lerning_rate": 0.1})


# ---------------------------------------------------------------- packing: no attention across documents

@pytest.fixture(scope="module")
def model(tiny_model_dir):
    def load(attention: str):
        m = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True, attn_implementation=attention)
        m.config.use_cache = False
        return m.eval()
    return load


def doc(first: int, n: int, answer_from: int) -> Example:
    ids = [(first + 7 * i) % 380 for i in range(n)]
    return Example(ids, [IGNORE] * answer_from + ids[answer_from:])


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_packed_document_sees_only_itself(model, attention):
    m = model(attention)
    a, b, c = doc(5, 20, 10), doc(40, 12, 4), doc(90, 9, 3)
    rows = lm_data.pack([a, b, c], 48)
    assert [r.documents for r in rows] == [(20, 12, 9)]
    batch = lm_data.collate(rows, pad_id=0, width=48)
    with torch.no_grad():
        packed = m(**batch, use_cache=False).logits[0]
        starts = [0, 20, 32]
        for d, at in zip((a, b, c), starts, strict=True):  # each document's logits as if it were alone
            alone = m(input_ids=torch.tensor([d.input_ids])).logits[0]
            assert torch.allclose(packed[at:at + len(d)], alone, atol=1e-5)
        # and the loss of the packed row is the token mean of the documents' own answer-token losses
        n = sum(d.n_target for d in (a, b, c))
        total = sum(m(input_ids=torch.tensor([d.input_ids]), labels=torch.tensor([d.labels])).loss * d.n_target
                    for d in (a, b, c))
        assert m(**batch, use_cache=False).loss == pytest.approx(float(total / n), rel=1e-5)


def test_flattened_rows_give_the_loss_of_the_rows(model):
    """flash-attention's layout (rows end to end, documents from the position ids), checked with sdpa here."""
    m = model("sdpa")
    rows = lm_data.pack([doc(5, 20, 10), doc(40, 12, 4), doc(90, 9, 3), doc(7, 30, 5), doc(11, 6, 2)], 32)
    with torch.no_grad():
        as_rows = m(**lm_data.collate(rows, pad_id=0, width=32), use_cache=False).loss
        flat = m(**lm_data.collate(rows, pad_id=0, width=32, flatten=True), use_cache=False).loss
    assert len(rows) > 1 and float(flat) == pytest.approx(float(as_rows), rel=1e-5)


# ---------------------------------------------------------------- bf16 master weights

def test_master_weights_keep_updates_that_bf16_would_round_away():
    """With weights of 1.0 in bf16 (spacing 2^-7) an AdamW step of lr 1e-3 is lost to rounding, every step;
    the fp32 masters add them up and the bf16 weights follow."""
    def steps(rt: lm_runtime.Runtime) -> torch.Tensor:
        layer = torch.nn.Linear(8, 8, bias=False).to(torch.bfloat16)
        torch.nn.init.ones_(layer.weight)
        opt = lm_runtime.Optimizer(layer, rt, lr=1e-3, weight_decay=0.0)
        for _ in range(20):
            layer.weight.grad = torch.ones_like(layer.weight)
            opt.step(max_grad_norm=0)
        return layer.weight.float()

    pure = lm_runtime.resolve({"precision": "bf16_pure"}, "full", torch.device("cpu"))
    plain = lm_runtime.resolve({"precision": "fp32"}, "full", torch.device("cpu"))
    assert torch.all(steps(plain) == 1.0)  # bf16 weights stepped directly: stuck
    assert torch.allclose(steps(pure), torch.full((8, 8), 1.0 - 20 * 1e-3), atol=2**-8)


def test_pure_bf16_resumes_exactly_from_its_fp32_masters(project):
    runtime = {**REFERENCE, "precision": "bf16_pure"}
    _, straight = train(project, runtime, max_steps=6)
    run = write_config(project, {**HP, "max_steps": 6}, run_id=next(RUN_IDS), runtime=runtime)
    trainer = TrainerRun(fsio.read_json(run.config), root=project)
    check_step = trainer.check_step

    def stop_at_3(n, loss):
        at = check_step(n, loss)
        trainer.end_reason = "stopped" if n == 3 else None
        return at
    trainer.check_step = stop_at_3
    assert causal_lm.train(trainer)["status"] == "stopped"
    resumed = causal_lm.train(TrainerRun(fsio.read_json(run.config), root=project))
    assert resumed["resumed_from_step"] == 3
    assert {s: loss for s, (loss, _) in losses_by_step(run).items()} == pytest.approx(straight, rel=1e-6)


# ---------------------------------------------------------------- the loop's writes overlap the device's work

def test_a_steps_metrics_line_is_written_while_the_next_step_trains(project, monkeypatch):
    """Each step's line is written after the next step was started (on a GPU, while the device computes it),
    except before a checkpoint or an evaluation; a failing step still leaves the line of the step before."""
    run = write_config(project, {**HP, "max_steps": 6, "save_every": 3}, run_id=next(RUN_IDS), runtime=REFERENCE)
    lines_at_launch = []
    train_step = causal_lm.train_step

    def watched(s, cfg, sb):
        lines_at_launch.append(sorted(m["step"] for m in fsio.iter_jsonl(run.metrics) if "loss" in m))
        if len(lines_at_launch) == 6 and fail:
            raise torch.OutOfMemoryError("out of memory at step 6")
        return train_step(s, cfg, sb)
    monkeypatch.setattr(causal_lm, "train_step", watched)
    fail = False
    causal_lm.train(TrainerRun(fsio.read_json(run.config), root=project))
    # launching step k: lines up to k - 2 (k - 1 is written once step k is under way), or k - 1 after a save
    assert lines_at_launch == [[], [], [1], [1, 2, 3], [1, 2, 3], [1, 2, 3, 4]]
    assert [m["step"] for m in fsio.iter_jsonl(run.metrics) if "loss" in m] == [1, 2, 3, 4, 5, 6]
    times = [m["time"] for m in fsio.iter_jsonl(run.metrics) if "loss" in m]
    assert times == sorted(times)  # each line has the time its step ended, not the time it was written

    again = write_config(project, {**HP, "max_steps": 6, "save_every": 3}, run_id=next(RUN_IDS), runtime=REFERENCE)
    run, lines_at_launch, fail = again, [], True
    with pytest.raises(torch.OutOfMemoryError):
        causal_lm.train(TrainerRun(fsio.read_json(again.config), root=project))
    assert [m["step"] for m in fsio.iter_jsonl(again.metrics) if "loss" in m] == [1, 2, 3, 4, 5]
