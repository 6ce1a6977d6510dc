"""Training-step throughput of the causal_lm task against a bare PyTorch loop: same model, batch, sequence length.

The task runs as the supervisor starts it, less the process start: `causal_lm.train(TrainerRun(...))` on a
local model folder and a chat file packed into sequences of exactly --seq tokens, with everything a step does
there (collation, loss over answer tokens, clipping, scheduler, metrics line, heartbeat, control files). The
bare loop is forward, backward, AdamW step and zero_grad over the same packed batches, with the same model
folder, weights dtype and autocast. Both are timed from step --warmup to the last step (the task from its
metrics.jsonl, the bare loop with a device sync at both ends). The two alternate --repeats times; the
medians of each are reported, and as `ratio` the median of the repeats' task/bare ratios. On CPU both use
--threads threads (default one).

MFU (--gpu): tokens/s x FLOPs per token / peak, with FLOPs per token = 6 N + 12 L T d_attn (forward and
backward of every matmul weight, the output layer included and the embedding lookup not; plus the attention
scores and values at sequence length T, PaLM appendix B) and the H100 SXM bf16 dense peak of 989 TFLOPS.

Usage:
    python benchmarks/trainer_throughput.py             # CPU: a ~5M-parameter Qwen3, batch 4 x 256 tokens
    python benchmarks/trainer_throughput.py --quick     # smoke run for the tests
    python benchmarks/trainer_throughput.py --gpu       # CUDA, bf16: a ~340M Qwen3, batch 8 x 2048 tokens
The last line is one JSON object.
"""

from __future__ import annotations

import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click
import torch

from autopilot import fsio, guard
from autopilot.train.tasks import missing_extra

if missing_extra("causal_lm"):  # the task measured here needs the `lm` extra, which ./bin/demo does not install
    sys.exit(f"trainer_throughput: {missing_extra('causal_lm')}")

from autopilot.train import lm_data, lm_tiny  # noqa: E402
from autopilot.train.contract import TrainerRun  # noqa: E402
from autopilot.train.tasks import causal_lm  # noqa: E402

H100_BF16_DENSE_FLOPS = 989e12
SIZES = {  # model size, batch, sequence length, steps timed after the warmup
    "quick": dict(hidden=64, layers=2, heads=4, kv_heads=2, vocab=1024, batch=2, seq=64, steps=6, warmup=2),
    "cpu": dict(hidden=256, layers=4, heads=8, kv_heads=4, vocab=4096, batch=4, seq=256, steps=20, warmup=3),
    "gpu": dict(hidden=1024, layers=24, heads=16, kv_heads=8, vocab=32768, batch=8, seq=2048, steps=30, warmup=5),
}


def build(root: Path, size: dict) -> None:
    """A project root with the model folder and chat data: data/train.jsonl, data/val.jsonl."""
    records = lm_tiny.synthetic_chat(2000, seed=0)
    lm_tiny.build_tiny_lm(root / "model", lm_tiny.corpus(records), vocab_size=512, model_vocab_size=size["vocab"],
                          hidden=size["hidden"], layers=size["layers"], heads=size["heads"],
                          kv_heads=size["kv_heads"], max_positions=size["seq"], intermediate=3 * size["hidden"])
    for name, part in (("train", records), ("val", records[:16])):
        fsio.atomic_write_text(root / "data" / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in part))


def task_config(size: dict) -> dict:
    hparams = {"finetune": "full", "lr": 1e-4, "warmup_ratio": 0.0, "batch_size": size["batch"],
               "max_length": size["seq"], "packing": True, "max_steps": size["warmup"] + size["steps"],
               "save_every": 10**6}
    return guard.config_document("00001", "bench", "causal_lm", seed=0, hparams=hparams,
                                 metric={"name": "val_loss", "goal": "minimize"}, max_seconds=3600, init_model="model",
                                 data={"source": "file", "train_file": "data/train.jsonl",
                                       "val_file": "data/val.jsonl", "spec": "chat_sft_v1"})


def time_task(root: Path, size: dict) -> float:
    """Tokens per second of the task's steps after the warmup, from its own metrics.jsonl."""
    run_dir = root / "runs" / "bench" / "00001"
    shutil.rmtree(run_dir, ignore_errors=True)
    causal_lm.train(TrainerRun(task_config(size), root=root))
    steps = [m for m in fsio.iter_jsonl(run_dir / "metrics.jsonl") if "loss" in m]
    timed = steps[size["warmup"]:]
    return sum(m["tokens"] for m in timed) / (timed[-1]["time"] - steps[size["warmup"] - 1]["time"])


def packed_batches(root: Path, size: dict, n: int) -> list[dict]:
    """The batches the task trains on (same tokenizer, packing, batch stream)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(root / "model", local_files_only=True)
    records = lm_data.read_records(root / "data" / "train.jsonl")
    examples = lm_data.pack(lm_data.encode_all(tokenizer, records, "chat_sft_v1", size["seq"]), size["seq"])
    stream = lm_data.MicroBatches(examples, size["batch"], seed=0)
    return [lm_data.collate(stream[g], tokenizer.pad_token_id) for g in range(n)]


def time_bare(root: Path, size: dict, batches: list[dict]) -> float:
    """Tokens per second of a bare loop: forward, backward, AdamW, zero_grad."""
    from transformers import AutoModelForCausalLM

    precision = causal_lm.pick_precision("full")
    model = AutoModelForCausalLM.from_pretrained(root / "model", local_files_only=True, dtype=precision.weights)
    model = model.to(precision.device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=precision.device.type == "cuda")
    batches = [{k: v.to(precision.device) for k, v in b.items()} for b in batches]
    tokens, start = 0, None
    for i, batch in enumerate(batches):
        if i == size["warmup"]:
            sync(precision.device)
            start = time.perf_counter()
        with precision.context():
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum()) if i >= size["warmup"] else 0
    sync(precision.device)
    seconds = time.perf_counter() - start
    del model, opt
    free(precision.device)
    return tokens / seconds


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def flops_per_token(root: Path, size: dict) -> tuple[float, int]:
    """6 N + 12 L T d_attn, and N (matmul weights: every linear layer and the output layer, no embedding)."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(root / "model", local_files_only=True)
    d_attn = c.num_attention_heads * c.head_dim
    kv = c.num_key_value_heads * c.head_dim
    per_layer = c.hidden_size * (d_attn + 2 * kv) + d_attn * c.hidden_size + 3 * c.hidden_size * c.intermediate_size
    n = c.num_hidden_layers * per_layer + c.vocab_size * c.hidden_size
    return 6 * n + 12 * c.num_hidden_layers * size["seq"] * d_attn, n


@click.command()
@click.option("--quick", is_flag=True, help="Smoke run: a tiny model, a few steps, one repeat.")
@click.option("--gpu", is_flag=True, help="CUDA bf16 with a ~340M model; reports MFU against an H100's peak.")
@click.option("--repeats", default=5, show_default=True, help="Alternating timings of each loop.")
@click.option("--threads", default=1, show_default=True,
              help="CPU threads of both loops (one: on a shared machine OpenMP threads waiting for each other "
                   "swamp the comparison).")
def main(quick: bool, gpu: bool, repeats: int, threads: int) -> None:
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu: no CUDA device")
    if not gpu and torch.cuda.is_available():
        raise SystemExit("a CUDA device is visible: run with --gpu, or hide it (CUDA_VISIBLE_DEVICES=)")
    torch.set_num_threads(threads)
    size = SIZES["gpu" if gpu else "quick" if quick else "cpu"]
    repeats = 1 if quick else repeats
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build(root, size)
        batches = packed_batches(root, size, size["warmup"] + size["steps"])
        bare, task = [], []
        for _ in range(repeats):
            bare.append(time_bare(root, size, batches))
            task.append(time_task(root, size))
            free(torch.device("cuda" if gpu else "cpu"))
            print(f"bare {bare[-1]:.0f} tokens/s, task {task[-1]:.0f} tokens/s", file=sys.stderr)
        fpt, n = flops_per_token(root, size)
        params = AutoModelForCausalLM.from_pretrained(root / "model", local_files_only=True).num_parameters()
    bare_tps, task_tps = statistics.median(bare), statistics.median(task)
    result = {
        "device": torch.cuda.get_device_name() if gpu else "cpu", "threads": torch.get_num_threads(),
        "dtype": "bf16 autocast, fp32 weights" if gpu else "fp32", "params": params, "matmul_params": n,
        "batch": size["batch"], "seq": size["seq"], "steps_timed": size["steps"], "repeats": repeats,
        "bare_tokens_per_second": round(bare_tps, 1), "task_tokens_per_second": round(task_tps, 1),
        # each repeat's two timings ran back to back under the same load: the median of their ratios
        "ratio": round(statistics.median(t / b for t, b in zip(task, bare, strict=True)), 3),
        "bare_all": [round(x, 1) for x in bare], "task_all": [round(x, 1) for x in task],
    }
    if gpu:
        result.update(flops_per_token=fpt, peak_flops=H100_BF16_DENSE_FLOPS,
                      mfu_task=round(task_tps * fpt / H100_BF16_DENSE_FLOPS, 4),
                      mfu_bare=round(bare_tps * fpt / H100_BF16_DENSE_FLOPS, 4))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
