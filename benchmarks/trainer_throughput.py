"""Training throughput of the causal_lm task: MFU, the task against a bare loop, peak memory, the input share.

The task runs as the supervisor starts it, less the process start: `causal_lm.train(TrainerRun(...))` on a
local model folder and a chat file packed into rows of --seq tokens, with everything a step does there (the
next step's batches built and copied while the device works, loss over answer tokens, clipping, scheduler,
metrics line, heartbeat, control files). The bare loop is forward, backward and the optimizer step over the
same batches with the same model folder and the same settings (precision, attention kernel, AdamW, and
torch.compile when the task compiles): the best the model does on this device with no trainer around it.
Both are timed from step --warmup on (compilation happens in the warmup), the task from its metrics.jsonl,
the bare loop with a device sync at both ends; they alternate --repeats times and the medians are reported,
with `ratio` the median of the repeats' task/bare ratios.

MFU = tokens/s x FLOPs per token / peak, with FLOPs per token = 6 N + 12 L T d_attn (PaLM, appendix B, as
nanoGPT's estimate_mfu): N the matmul weights (every linear layer of the blocks and the output layer, not the
embedding lookup), L layers, T the sequence length, d_attn = heads x head_dim; forward and backward. The peak
is the device's dense bf16 tensor-core figure from PEAK_BF16_TFLOPS (or --peak-tflops). MFU is null on CPU,
on a device not in the table, and in fp32. Tokens are real tokens: the padding at the end of packed rows
does not count.

Also reported: peak device memory of each loop, the input pipeline's share of the task's step time (building a
step's batches and starting their copy to the device, from the task's `data_ms`), and how long tokenizing the
training file takes once and then from the token cache.

Usage:
    python benchmarks/trainer_throughput.py             # CPU: a ~5M-parameter Qwen3, batch 4 x 256 tokens
    python benchmarks/trainer_throughput.py --quick     # smoke run for the tests
    python benchmarks/trainer_throughput.py --gpu       # CUDA, bf16: a 335.6M Qwen3, batch 8 x 2048 tokens
    python benchmarks/trainer_throughput.py --gpu --precision bf16_pure --compile false
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

from autopilot.train import lm_data, lm_runtime, lm_tiny, token_cache  # noqa: E402
from autopilot.train.contract import TrainerRun  # noqa: E402
from autopilot.train.tasks import causal_lm  # noqa: E402

FLOP_FORMULA = "6 N + 12 L T d_attn per token (N: matmul weights incl. the output layer, no embedding)"
PEAK_BF16_TFLOPS: dict[str, float | None] = {  # dense bf16 tensor-core peak (vendor data sheets), by a substring
    # of torch.cuda.get_device_name(), first match; None: a name that would match a wrong entry (A10G is not A10)
    "GH200": 989.4, "H200": 989.4, "H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.4, "H800": 989.4,
    "B200": 2250.0, "A100": 312.0, "A800": 312.0, "L40S": 362.1, "L40": 181.0, "L4": 121.0, "A10G": None,
    "A10": 125.0, "A6000": 154.8, "MI300X": 1307.4,
}
SIZES = {  # model size, batch, sequence length, steps timed after the warmup (which holds the compilation)
    "quick": dict(hidden=64, layers=2, heads=4, kv_heads=2, vocab=1024, batch=2, seq=64, steps=6, warmup=2),
    "cpu": dict(hidden=256, layers=4, heads=8, kv_heads=4, vocab=4096, batch=4, seq=256, steps=20, warmup=3),
    "gpu": dict(hidden=1024, layers=24, heads=16, kv_heads=8, vocab=32768, batch=8, seq=2048, steps=30, warmup=5),
}
RECORDS = 2000  # synthetic chats of the training file


def device_peak(device_name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return tflops
    return None


def build(root: Path, size: dict) -> None:
    """A project root with the model folder and chat data: data/train.jsonl, data/val.jsonl."""
    records = lm_tiny.synthetic_chat(RECORDS, seed=0)
    lm_tiny.build_tiny_lm(root / "model", lm_tiny.corpus(records), vocab_size=512, model_vocab_size=size["vocab"],
                          hidden=size["hidden"], layers=size["layers"], heads=size["heads"],
                          kv_heads=size["kv_heads"], max_positions=size["seq"], intermediate=3 * size["hidden"])
    for name, part in (("train", records), ("val", records[:16])):
        fsio.atomic_write_text(root / "data" / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in part))


def task_config(size: dict, settings: dict) -> dict:
    hparams = {"finetune": "full", "lr": 1e-4, "warmup_ratio": 0.0, "batch_size": size["batch"],
               "max_length": size["seq"], "packing": True, "max_steps": size["warmup"] + size["steps"],
               "save_every": 10**6}
    return guard.config_document("00001", "bench", "causal_lm", seed=0, hparams=hparams,
                                 metric={"name": "val_loss", "goal": "minimize"}, max_seconds=3600, init_model="model",
                                 data={"source": "file", "train_file": "data/train.jsonl",
                                       "val_file": "data/val.jsonl", "spec": "chat_sft_v1"}, causal_lm=settings)


def time_task(root: Path, size: dict, settings: dict) -> dict:
    """Tokens per second of the task's steps after the warmup, its input share and peak memory."""
    run_dir = root / "runs" / "bench" / "00001"
    shutil.rmtree(run_dir, ignore_errors=True)
    reset_peak()
    summary = causal_lm.train(TrainerRun(task_config(size, settings), root=root))
    if summary["status"] != "completed":
        raise SystemExit(f"the task did not complete: {summary['error']}")
    steps = [m for m in fsio.iter_jsonl(run_dir / "metrics.jsonl") if "loss" in m]
    timed = steps[size["warmup"]:]
    seconds = timed[-1]["time"] - steps[size["warmup"] - 1]["time"]
    return {"tokens_per_second": sum(m["tokens"] for m in timed) / seconds,
            "input_share": sum(m["data_ms"] for m in timed) / 1000 / seconds,
            "peak_memory_mb": summary["peak_memory_mb"] if torch.cuda.is_available() else None,
            "runtime": summary["runtime"]}


def step_batches(root: Path, size: dict, rt: lm_runtime.Runtime, n: int) -> list[dict]:
    """The batches the task trains on (same tokenizer, packing, batch stream, layout), on the device."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(root / "model", local_files_only=True)
    lm_data.ensure_chat_template(tokenizer)
    encoded = token_cache.encoded(root / "cache", tokenizer, root / "model", root / "data" / "train.jsonl",
                                  "chat_sft_v1")
    rows = lm_data.pack(lm_data.select(encoded, size["seq"]), size["seq"])
    stream = lm_data.MicroBatches(rows, size["batch"], seed=0)
    flatten = rt.attention == "flash_attention_2"
    batches = [lm_data.collate(stream[g], tokenizer.pad_token_id, width=size["seq"], flatten=flatten)
               for g in range(n)]
    for g, b in enumerate(batches):
        b["num_items_in_batch"] = (b["labels"][:, 1:] != lm_data.IGNORE).sum()  # a tensor, as in the task
        b["tokens"] = sum(len(e) for e in stream[g])  # real tokens, no padding
    return [{k: v.to(rt.device) if torch.is_tensor(v) else v for k, v in b.items()} for b in batches]


def time_bare(root: Path, size: dict, batches: list[dict], rt: lm_runtime.Runtime) -> dict:
    """Tokens per second of a bare loop: forward, backward, optimizer step (compiled when the task is)."""
    from transformers import AutoModelForCausalLM

    reset_peak()
    model = AutoModelForCausalLM.from_pretrained(root / "model", local_files_only=True, dtype=rt.weights,
                                                 attn_implementation=rt.attention).to(rt.device).train()
    if rt.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    opt = lm_runtime.Optimizer(model, rt, lr=1e-4, weight_decay=0.0)
    forward = torch.compile(model) if rt.compile else model
    tokens, start = 0, None
    for i, batch in enumerate(batches):
        if i == size["warmup"]:
            sync(rt.device)
            start = time.perf_counter()
        inputs = {k: v for k, v in batch.items() if k != "tokens"}
        with rt.context():
            loss = forward(**inputs, use_cache=False).loss
        loss.backward()
        opt.step(max_grad_norm=0)
        tokens += batch["tokens"] if i >= size["warmup"] else 0
    sync(rt.device)
    seconds = time.perf_counter() - start
    peak = round(torch.cuda.max_memory_allocated() / 2**20, 1) if rt.device.type == "cuda" else None
    del model, opt, forward
    free()
    return {"tokens_per_second": tokens / seconds, "peak_memory_mb": peak}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_peak() -> None:
    free()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def tokenize_seconds(root: Path) -> dict:
    """Seconds to tokenize the training file once, and to load it from the token cache after."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(root / "model", local_files_only=True)
    lm_data.ensure_chat_template(tokenizer)
    cache = root / "tokenize-check"
    times = []
    for _ in range(2):
        start = time.perf_counter()
        token_cache.encoded(cache, tokenizer, root / "model", root / "data" / "train.jsonl", "chat_sft_v1")
        times.append(time.perf_counter() - start)
    return {"records": RECORDS, "tokenize_seconds": round(times[0], 3), "cached_seconds": round(times[1], 3)}


def flops_per_token(root: Path, seq: int) -> tuple[float, int]:
    """6 N + 12 L T d_attn, and N (matmul weights: every linear layer and the output layer, no embedding)."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(root / "model", local_files_only=True)
    d_attn = c.num_attention_heads * c.head_dim
    kv = c.num_key_value_heads * c.head_dim
    per_layer = c.hidden_size * (d_attn + 2 * kv) + d_attn * c.hidden_size + 3 * c.hidden_size * c.intermediate_size
    n = c.num_hidden_layers * per_layer + c.vocab_size * c.hidden_size
    return 6 * n + 12 * c.num_hidden_layers * seq * d_attn, n


def mfu(tokens_per_second: float, fpt: float, peak: float | None) -> float | None:
    return None if peak is None else round(tokens_per_second * fpt / (peak * 1e12), 4)


def versions() -> dict:
    import transformers

    return {"torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
            "python": sys.version.split()[0]}


@click.command()
@click.option("--quick", is_flag=True, help="Smoke run: a tiny model, a few steps, one repeat.")
@click.option("--gpu", is_flag=True, help="CUDA with a 335.6M-parameter Qwen3 at batch 8 x 2048.")
@click.option("--repeats", default=None, type=int, help="Alternating timings of each loop [3; --gpu, --quick: 1].")
@click.option("--threads", default=1, show_default=True,
              help="CPU threads of both loops (one: on a shared machine OpenMP threads waiting for each other "
                   "swamp the comparison).")
@click.option("--precision", type=click.Choice(["auto", *lm_runtime.PRECISIONS]), default="auto", show_default=True)
@click.option("--attention", type=click.Choice(["auto", *lm_runtime.ATTENTIONS]), default="auto", show_default=True)
@click.option("--adamw", type=click.Choice(lm_runtime.ADAMWS), default="fused", show_default=True)
@click.option("--compile", "compile_", type=click.Choice(["auto", "true", "false"]), default="auto",
              show_default=True, help="torch.compile of both loops (auto: on CUDA).")
@click.option("--activation-checkpointing", is_flag=True)
@click.option("--peak-tflops", type=float, default=None, help="The device's dense bf16 peak, if not in the table.")
def main(quick: bool, gpu: bool, repeats: int | None, threads: int, precision: str, attention: str, adamw: str,
         compile_: str, activation_checkpointing: bool, peak_tflops: float | None) -> None:
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
    repeats = repeats or (1 if quick or gpu else 3)
    settings = {"precision": precision, "attention": attention, "adamw": adamw,
                "compile": {"auto": "auto", "true": True, "false": False}[compile_],
                "activation_checkpointing": activation_checkpointing}
    rt = lm_runtime.resolve(settings, "full")
    device_name = torch.cuda.get_device_name() if gpu else "cpu"
    peak = (peak_tflops or device_peak(device_name)) if rt.precision != "fp32" and gpu else None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build(root, size)
        tokenizing = tokenize_seconds(root)
        batches = step_batches(root, size, rt, size["warmup"] + size["steps"])
        bare, task = [], []
        for _ in range(repeats):
            bare.append(time_bare(root, size, batches, rt))
            task.append(time_task(root, size, settings))
            print(f"bare {bare[-1]['tokens_per_second']:.0f} tokens/s, task {task[-1]['tokens_per_second']:.0f} "
                  f"tokens/s", file=sys.stderr)
        fpt, n = flops_per_token(root, size["seq"])
        params = AutoModelForCausalLM.from_pretrained(root / "model", local_files_only=True).num_parameters()
    bare_tps = statistics.median(b["tokens_per_second"] for b in bare)
    task_tps = statistics.median(t["tokens_per_second"] for t in task)
    result = {
        "device": device_name, "versions": versions(), "threads": torch.get_num_threads(),
        "runtime": task[-1]["runtime"], "params": params, "matmul_params": n,
        "batch": size["batch"], "seq": size["seq"], "steps_timed": size["steps"], "repeats": repeats,
        "task_tokens_per_second": round(task_tps, 1), "bare_tokens_per_second": round(bare_tps, 1),
        # each repeat's two timings ran back to back under the same load: the median of their ratios
        "ratio": round(statistics.median(t["tokens_per_second"] / b["tokens_per_second"]
                                         for t, b in zip(task, bare, strict=True)), 3),
        "flop_formula": FLOP_FORMULA, "flops_per_token": fpt, "peak_tflops": peak,
        "mfu_task": mfu(task_tps, fpt, peak), "mfu_bare": mfu(bare_tps, fpt, peak),
        "peak_memory_mb": {"task": task[-1]["peak_memory_mb"], "bare": bare[-1]["peak_memory_mb"]},
        "input_share": round(statistics.median(t["input_share"] for t in task), 4),
        "tokenization": tokenizing,
        "task_all": [round(t["tokens_per_second"], 1) for t in task],
        "bare_all": [round(b["tokens_per_second"], 1) for b in bare],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
