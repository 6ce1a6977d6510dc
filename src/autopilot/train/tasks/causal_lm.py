"""Built-in task: fine-tune a causal language model (transformers) on chat, completion or syllo data.

Usage (the supervisor runs it; so can you):
    python -m autopilot.train.tasks.causal_lm runs/<study>/<run>/config.json runs/<study>/<run>

The model and tokenizer come from config.json's `init_model`, a local folder (`local_files_only`: nothing is
ever downloaded); the training file and the study's fixed validation file from its `data` (see
autopilot.train.lm_data for how each spec is tokenized, with loss on the answer tokens only; the training
file is tokenized once per dataset and tokenizer, autopilot.train.token_cache). Full fine-tuning or LoRA
(peft); gradient accumulation; cosine or linear schedule with warmup. How it uses the hardware (precision,
attention kernel, AdamW implementation, torch.compile, activation checkpointing) is the study's `causal_lm:`
section, see autopilot.train.lm_runtime; the next step's batches are built and sent to the device while the
device still works on the current one. A checkpoint (weights as save_pretrained writes them, optimizer,
scheduler, random states, data position) is written every `save_every` steps and when the run is stopped, and
the task resumes from the last one when started again. The run ends with the sealed evaluation of causal_lm_eval.
In continual mode (config.json data.eval_sets) the weights it starts from (the champion's) and those it ends
with are both measured on every evaluation set of the run (autopilot.train.eval_sets), for the judge to pair.

For the registry: `export` turns a LoRA checkpoint into one save_pretrained folder (adapters merged) or keeps the
adapter; `load_champion` loads either for `autopilot serve`; `--test REQUEST OUT_DIR` scores the champion once on
the study's held-out data.test_file with the same sealed evaluation.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler
from transformers.utils import logging as hf_logging

from autopilot.errors import TrainerError
from autopilot.paths import Project
from autopilot.train import checkpoints, eval_sets, lm_data, lm_runtime, token_cache
from autopilot.train.contract import TestRun, TrainerRun
from autopilot.train.lm_runtime import Runtime
from autopilot.train.tasks import causal_lm_eval

log = logging.getLogger("autopilot.train.tasks.causal_lm")

SCHEDULES = ("cosine", "linear")


@dataclass
class TrainConfig:
    finetune: str = field(default="lora", metadata={"help": "full | lora (peft adapters on a frozen model)"})
    lr: float = field(default=2e-4, metadata={"help": "peak learning rate"})
    schedule: str = field(default="cosine", metadata={"help": "cosine | linear decay to 0 after warmup"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "share of the steps with a linear warmup"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW decoupled weight decay (not on norms, biases)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping; 0 - none"})
    batch_size: int = field(default=8, metadata={"help": "sequences per micro-batch (per forward pass)"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the training data (when max_steps is 0)"})
    max_steps: int = field(default=0, metadata={"help": "optimizer steps; 0 - as many as `epochs` takes"})
    max_length: int = field(default=1024, metadata={"help": "tokens per training sequence (longer ones are cut)"})
    packing: bool = field(default=False, metadata={"help": "concatenate examples into max_length sequences"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scale numerator (scale = alpha / r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    lora_target_modules: str = field(default="all-linear",
                                     metadata={"help": "all-linear, or module names with commas: q_proj,v_proj"})
    save_every: int = field(default=200, metadata={"help": "checkpoint every N optimizer steps (and at the end)"})
    eval_every: int = field(default=0, metadata={"help": "validation loss every N steps (picks the best "
                                                         "checkpoint); 0 - only at the end"})
    keep_checkpoints: int = field(default=2, metadata={"help": "checkpoints kept (plus the best)"})

    @classmethod
    def from_hparams(cls, hparams: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(hparams) - known)
        if "gradient_checkpointing" in unknown:
            raise TrainerError("baseline key gradient_checkpointing is now the study setting "
                               "causal_lm.activation_checkpointing (it changes memory and speed, not what is learned): "
                               "move it there")
        settings = sorted(set(unknown) & set(lm_runtime.settings(None)))
        if settings:
            raise TrainerError(f"{', '.join(settings)}: settings of the study's causal_lm section, not "
                               "hyperparameters; move them from the baseline to causal_lm:")
        if unknown:
            raise TrainerError(f"unknown causal_lm hyperparameter(s) {', '.join(unknown)} in the baseline; "
                               f"the task knows {', '.join(sorted(known))}")
        try:
            return cls(**hparams)
        except ValueError as e:
            raise TrainerError(f"baseline/overrides: {e}") from None

    def __post_init__(self):
        if self.finetune not in ("full", "lora"):
            raise ValueError(f"`finetune` must be full or lora, but got {self.finetune!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"`schedule` must be one of {SCHEDULES}, but got {self.schedule!r}")
        if min(self.batch_size, self.grad_accum, self.max_length, self.save_every, self.lora_r) < 1:
            raise ValueError(f"batch_size, grad_accum, max_length, save_every and lora_r must be >= 1, got {self}")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ValueError(f"`epochs > 0` or `max_steps > 0` must hold, but got ({self.epochs=}, {self.max_steps=})")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"`0 <= warmup_ratio < 1` must hold, but got {self.warmup_ratio=}")


# ---------------------------------------------------------------- data

def resolve(run: TrainerRun, path: str) -> Path:
    return run.root / path  # an absolute path stays itself


def load_data(run: TrainerRun, cfg: TrainConfig, tokenizer, model_dir: Path, max_positions: int):
    """Training examples (tokenized once per dataset, cut, maybe packed) and the fixed evaluation set."""
    data = run.config["data"]
    for key in ("train_file", "val_file"):
        if not data.get(key):
            raise TrainerError(f"config.json data.{key} is missing: a causal_lm study sets data.{key} (or "
                               "data.source: queue for the training file)")
    train_file, val_file = resolve(run, data["train_file"]), resolve(run, data["val_file"])
    train_spec = lm_data.check_spec(data.get("train_spec") or data.get("spec", "chat_sft_v1"))
    val_spec = lm_data.check_spec(data.get("spec", "chat_sft_v1"))
    run.data_hash = lm_data.files_hash(train_file, val_file)
    lm_data.ensure_chat_template(tokenizer)
    encoded = token_cache.encoded(Project(run.root).token_cache, tokenizer, model_dir, train_file, train_spec)
    examples = lm_data.select(encoded, cfg.max_length)
    if cfg.packing:
        examples = lm_data.pack(examples, cfg.max_length)
    eval_set = causal_lm_eval.build_eval_set(tokenizer, lm_data.read_records(val_file), val_spec, max_positions)
    log.info("%d training sequences from %s (%s), %d validation examples from %s (%s)",
             len(examples), train_file, train_spec, len(eval_set.examples), val_file, val_spec)
    return examples, eval_set


def check_metric(run: TrainerRun, eval_set: causal_lm_eval.EvalSet) -> str:
    name, goal = run.config["metric"]["name"], run.config["metric"]["goal"]
    if causal_lm_eval.GOALS.get(name) != goal:
        raise TrainerError(f"the causal_lm task reports {causal_lm_eval.GOALS} (name: goal); the study's metric "
                           f"is {name!r} ({goal})")
    if name == "exact_match" and eval_set.spec not in causal_lm_eval.EXACT_MATCH_SPECS:
        raise TrainerError(f"exact_match needs a validation file of {causal_lm_eval.EXACT_MATCH_SPECS}, "
                           f"not {eval_set.spec}")
    return name


# ---------------------------------------------------------------- model and optimizer

def load_model(source: Path, cfg: TrainConfig, rt: Runtime, adapter: Path | None = None):
    """The model from a local folder (never a hub download), with LoRA adapters (new, or from `adapter`)."""
    model = AutoModelForCausalLM.from_pretrained(source, local_files_only=True, dtype=rt.weights,
                                                 attn_implementation=rt.attention)
    model.config.use_cache = False  # no KV cache while training
    if rt.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.finetune == "lora":
        if adapter is not None:
            model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
        else:
            targets = cfg.lora_target_modules
            model = get_peft_model(model, LoraConfig(
                r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, task_type="CAUSAL_LM",
                target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")]))
        if rt.master_weights:
            model = model.to(torch.bfloat16)  # peft makes adapters fp32; pure bf16 keeps fp32 masters instead
    return model.to(rt.device)


def total_steps(cfg: TrainConfig, batches: lm_data.MicroBatches) -> int:
    if cfg.max_steps > 0:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * batches.per_epoch / cfg.grad_accum))


# ---------------------------------------------------------------- one optimizer step

@dataclass
class StepBatches:
    """The micro-batches of one optimizer step, already on the device."""

    batches: list[dict]  # each with the step's answer-token count: the loss is the mean over them
    tokens: int  # tokens trained on (no padding)
    samples: int  # examples (documents of packed rows)
    seconds: float  # to build them and start their copy to the device


def step_batches(s: Setup, cfg: TrainConfig, step: int) -> StepBatches:
    start = time.perf_counter()
    micro = [s.batches[step * cfg.grad_accum + i] for i in range(cfg.grad_accum)]
    flatten = cfg.packing and s.rt.attention == "flash_attention_2"  # varlen kernels over position ids
    collated = [lm_data.collate(m, s.pad_id, width=cfg.max_length if cfg.packing else None, flatten=flatten)
                for m in micro]
    n_items = sum(int((b["labels"][:, 1:] != lm_data.IGNORE).sum()) for b in collated)
    for b in collated:  # a tensor, not an int: a compiled model would be compiled again for each new count
        b["num_items_in_batch"] = torch.tensor(n_items)
    pin = s.rt.device.type == "cuda"  # pinned host memory: the copy runs asynchronously
    on_device = [{k: (v.pin_memory() if pin else v).to(s.rt.device, non_blocking=True) for k, v in b.items()}
                 for b in collated]
    return StepBatches(on_device, tokens=sum(len(e) for m in micro for e in m),
                       samples=sum(len(e.documents) or 1 for m in micro for e in m),
                       seconds=time.perf_counter() - start)


def train_step(s: Setup, cfg: TrainConfig, sb: StepBatches) -> torch.Tensor:
    """Forward and backward over the micro-batches, then one optimizer step; returns the loss on the device
    (reading it waits for the device: the caller prepares the next batches first).

    The loss is the mean over every answer token of the step (not a mean of micro-batch means): each
    micro-batch's summed loss is divided by the step's answer-token count (transformers' num_items_in_batch).
    A step whose compilation fails is trained again in eager mode (lm_runtime.Forward).
    """
    try:
        total = forward_backward(s, sb)
    except Exception as e:
        if not s.forward.fall_back(e):
            raise
        s.opt.zero_grad()
        total = forward_backward(s, sb)
    s.opt.step(cfg.max_grad_norm)
    s.sched.step()
    s.forward.step_done()
    return total


def forward_backward(s: Setup, sb: StepBatches) -> torch.Tensor:
    total = torch.zeros((), device=s.rt.device)
    for b in sb.batches:
        with s.rt.context():
            # no KV cache: with one, transformers would not mask packed documents apart
            loss = s.forward(**b, use_cache=False).loss
        loss.backward()
        total += loss.detach()
    return total


# ---------------------------------------------------------------- setup

@dataclass
class Setup:
    """What the loop works with, built (or restored from the last checkpoint) before the first step."""

    model: torch.nn.Module
    forward: lm_runtime.Forward  # the model as training calls it (compiled or not)
    rt: Runtime
    tokenizer: Any
    opt: lm_runtime.Optimizer
    sched: Any
    batches: lm_data.MicroBatches
    eval_set: causal_lm_eval.EvalSet
    metric_name: str
    total_steps: int
    state: dict | None  # the checkpoint resumed from
    sets: list[eval_sets.LoadedSet]  # continual mode: every set champion and challenger are measured on

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id


def model_folder(run: TrainerRun) -> Path:
    if not run.config.get("init_model"):
        raise TrainerError("config.json init_model is missing: a causal_lm study sets model.path")
    folder = resolve(run, run.config["init_model"])
    if not (folder / "config.json").is_file():
        raise TrainerError(f"{run.config['init_model']}: no model folder (config.json) there; model.path names a "
                           "local folder as save_pretrained writes it")
    return folder


def prepare(run: TrainerRun, cfg: TrainConfig, rt: Runtime) -> Setup:
    """Tokenizer, model, data, optimizer and schedule; from the last checkpoint when there is one."""
    model_dir = model_folder(run)
    run.heartbeat(phase="load", force=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    last, state = resume_state(run, cfg)
    torch.manual_seed(run.seed)
    if last is not None and cfg.finetune == "full":
        model = load_model(last / "model", cfg, rt)
    else:
        model = load_model(model_dir, cfg, rt, adapter=last / "adapter" if last is not None else None)
    examples, eval_set = load_data(run, cfg, tokenizer, model_dir, model.config.max_position_embeddings)
    batches = lm_data.MicroBatches(examples, cfg.batch_size, run.seed)
    steps = total_steps(cfg, batches)
    opt = lm_runtime.Optimizer(model, rt, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_scheduler(cfg.schedule, opt.adamw, num_warmup_steps=round(cfg.warmup_ratio * steps),
                          num_training_steps=steps)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        checkpoints.set_rng_state(state["rng"])  # last: the dropout of the next step draws from here
    sets = eval_sets.load(run, tokenizer, model.config.max_position_embeddings, eval_set)
    return Setup(model, lm_runtime.Forward(model, rt.compile), rt, tokenizer, opt, sched, batches, eval_set,
                 check_metric(run, eval_set), steps, state, sets)


# ---------------------------------------------------------------- checkpoints

def save_checkpoint(run: TrainerRun, s: Setup, cfg: TrainConfig, step: int, metric: float | None,
                    trained_seconds: float) -> Path:
    """Weights as save_pretrained writes them (model/ or adapter/, with the tokenizer) and the training state."""
    def write_weights(folder: Path) -> None:
        target = folder / ("adapter" if cfg.finetune == "lora" else "model")
        s.model.save_pretrained(target)
        s.tokenizer.save_pretrained(target)

    state = {"optimizer": s.opt.state_dict(), "scheduler": s.sched.state_dict(), "rng": checkpoints.rng_state(),
             "step": step, "data_position": step * cfg.grad_accum, "finetune": cfg.finetune,
             "trained_seconds": trained_seconds}
    ckpt_dir = run.files.checkpoint
    path = checkpoints.save(ckpt_dir, step, state, metric=metric, write_extra=write_weights)
    checkpoints.prune(ckpt_dir, keep_last=cfg.keep_checkpoints, goal=causal_lm_eval.GOALS[causal_lm_eval.PRIMARY])
    return path


def resume_state(run: TrainerRun, cfg: TrainConfig) -> tuple[Path | None, dict | None]:
    last = checkpoints.latest(run.files.checkpoint)
    if last is None:
        return None, None
    state = checkpoints.load(last)
    if state["finetune"] != cfg.finetune:
        raise TrainerError(f"{last} holds a {state['finetune']} fine-tune, but this run is {cfg.finetune}")
    log.info("resuming from %s (step %d)", last, state["step"])
    return last, state


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


# ---------------------------------------------------------------- the run

def train(run: TrainerRun) -> dict:
    cfg = TrainConfig.from_hparams(run.hparams)
    rt = lm_runtime.resolve(run.config.get("causal_lm"), cfg.finetune)
    run.device = str(rt.device)
    s = prepare(run, cfg, rt)
    # continual mode: the champion (the weights the run starts from) on every evaluation set, before any step
    champion = eval_sets.before(run, s.model, s.tokenizer, s.sets, rt.device, resumed=s.state is not None)
    step, trained_before = (s.state["step"], s.state["trained_seconds"]) if s.state else (0, 0.0)
    run.log_metrics(step, event="resume" if s.state else "start", total_steps=s.total_steps,
                    trainable_params=sum(p.numel() for p in s.model.parameters() if p.requires_grad),
                    runtime=rt.record())

    s.model.train()
    run.begin_training(total_steps=s.total_steps, start_step=step)
    run.poll_control()  # a pause or stop that is already there holds before the first step
    t0, tokens, samples, metric = time.monotonic(), 0, 0, None
    upcoming = step_batches(s, cfg, step) if step < s.total_steps else None
    unwritten: dict | None = None  # the last step's metrics line, written once the next step is under way
    while step < s.total_steps and not run.should_end:
        sb = upcoming
        lr = s.sched.get_last_lr()[0]  # the rate this step uses
        try:
            loss = train_step(s, cfg, sb)
        finally:
            if unwritten is not None:  # the step before, written while the device works on this one
                run.record_step(**unwritten)
                unwritten = None
        # built while the device works on this step; the loss is read after
        upcoming = step_batches(s, cfg, step + 1) if step + 1 < s.total_steps else None
        loss = loss.item()
        step, tokens, samples = step + 1, tokens + sb.tokens, samples + sb.samples
        seconds = time.monotonic() - t0
        at = run.check_step(step, loss)  # divergence, control files: whether there is a next step
        unwritten = dict(step=step, loss=loss, at=at, lr=lr, tokens=sb.tokens, data_ms=round(1000 * sb.seconds, 3),
                         tokens_per_second=round(tokens / seconds, 1))
        evaluate = cfg.eval_every and step % cfg.eval_every == 0 and step < s.total_steps
        save = step % cfg.save_every == 0 and step < s.total_steps
        if evaluate or save:  # in order, before the next step changes the weights
            run.record_step(**unwritten)
            unwritten = None
        metric = validation_loss(run, s, step) if evaluate else None
        if save:
            save_checkpoint(run, s, cfg, step, metric, trained_before + seconds)
    if unwritten is not None:
        run.record_step(**unwritten)
    run.end_training()
    run.train_seconds = time.monotonic() - t0

    result, extra = None, {}
    if not run.should_end:  # stopped, skipped or out of time: no evaluation, only the checkpoint
        result = causal_lm_eval.evaluate(s.model, s.tokenizer, s.eval_set, rt.device,
                                         progress=lambda: run.heartbeat(phase="evaluate"))
        metric = result["metrics"][causal_lm_eval.PRIMARY]
        run.log_metrics(step, **result["metrics"])
        if s.sets:  # continual mode: the challenger on the same sets
            extra["eval_sets"] = eval_sets.report(s.sets, champion, eval_sets.measure(
                run, s.model, s.tokenizer, s.sets, rt.device, val_result=result))
    # on stop too; a step saved already (stopped right after a save, resumed at the end) is kept as it is
    final = save_checkpoint(run, s, cfg, step, metric, trained_before + run.train_seconds) if step else None
    seconds = max(run.train_seconds, 1e-9)
    return run.finish(
        metric_value=None if result is None else result["metrics"][s.metric_name],
        per_example=None if result is None else result["per_example"][s.metric_name],
        per_example_name=s.metric_name, per_example_goal=causal_lm_eval.GOALS[s.metric_name],
        metrics={**(result["metrics"] if result else {}), "train_loss": run.last_loss,
                 "train_sequences": float(len(s.batches.examples)),
                 "epochs": step * cfg.grad_accum / s.batches.per_epoch},
        tokens_per_second=round(tokens / seconds, 1), samples_per_second=round(samples / seconds, 2),
        peak_memory_mb=peak_memory_mb(rt.device),
        parameters=sum(p.numel() for p in s.model.parameters()),
        checkpoint=str(final.relative_to(run.root)) if final else None,
        resumed_from_step=s.state["step"] if s.state else None,
        runtime={**rt.record(), **s.forward.record()}, **extra,
    )


def validation_loss(run: TrainerRun, s: Setup, step: int) -> float:
    """The sealed evaluation's val_loss during training (no generation): the checkpoint's metric."""
    result = causal_lm_eval.evaluate(s.model, s.tokenizer, s.eval_set, s.rt.device, generate=False,
                                     progress=lambda: run.heartbeat(phase="evaluate"))
    run.log_metrics(step, val_loss=result["metrics"]["val_loss"])
    run.heartbeat(phase="train", force=True)
    return result["metrics"]["val_loss"]


# ---------------------------------------------------------------- the champion

def export(checkpoint: Path, base_model: Path, dest: Path, lora: str) -> str:
    """Write a champion's weights from a final checkpoint into `dest`; return their format.

    A full fine-tune's checkpoint holds a save_pretrained folder already (transformers). A LoRA checkpoint holds
    the adapter: merged into the base weights (lora=merge: one folder any server loads, transformers) or kept as
    it is (lora=adapter: peft_adapter, loaded on top of `base_model`).
    """
    if (checkpoint / "model").is_dir():
        shutil.copytree(checkpoint / "model", dest)
        return "transformers"
    if lora == "adapter":
        shutil.copytree(checkpoint / "adapter", dest)
        return "peft_adapter"
    model = AutoModelForCausalLM.from_pretrained(base_model, local_files_only=True, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, checkpoint / "adapter").merge_and_unload()
    merged.save_pretrained(dest)
    AutoTokenizer.from_pretrained(checkpoint / "adapter", local_files_only=True).save_pretrained(dest)
    return "transformers"


def load_champion(weights: Path, weights_format: str, base_model: Path | None, device: torch.device):
    """The champion's model (eval mode) and tokenizer, from its exported folder."""
    tokenizer = AutoTokenizer.from_pretrained(weights, local_files_only=True)
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if weights_format == "peft_adapter":
        if base_model is None:
            raise TrainerError(f"{weights} is a LoRA adapter, but its champion.json names no base model")
        model = AutoModelForCausalLM.from_pretrained(base_model, local_files_only=True, dtype=dtype)
        model = PeftModel.from_pretrained(model, weights)
    else:
        model = AutoModelForCausalLM.from_pretrained(weights, local_files_only=True, dtype=dtype)
    return model.to(device).eval(), tokenizer


def test(request: TestRun) -> None:
    """The study's metric on data.test_file, by the sealed evaluation the runs were judged with on val_file."""
    data, metric = request.data, request.request["metric"]["name"]
    if metric not in causal_lm_eval.GOALS:
        raise TrainerError(f"the causal_lm task measures {sorted(causal_lm_eval.GOALS)}, not {metric!r}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base = request.root / request.request["init_model"] if request.request["init_model"] else None
    model, tokenizer = load_champion(request.weights, request.request["weights_format"], base, device)
    spec = lm_data.check_spec(data.get("spec", "chat_sft_v1"))
    eval_set = causal_lm_eval.build_eval_set(tokenizer, lm_data.read_records(request.root / data["test_file"]), spec,
                                             model.config.max_position_embeddings)
    result = causal_lm_eval.evaluate(model, tokenizer, eval_set, device, progress=lambda: None)
    if metric not in result["per_example"]:
        raise TrainerError(f"{metric} is not measured on a {spec} test file")
    request.report(metric_value=result["metrics"][metric], per_example=result["per_example"][metric],
                   metrics=result["metrics"])


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if sys.argv[1:2] == ["--test"]:
        with TestRun.from_argv() as request:
            test(request)
        return
    with TrainerRun.from_argv() as run:
        try:
            train(run)
        except torch.OutOfMemoryError as e:
            hp = {**dataclasses.asdict(TrainConfig()), **run.hparams}
            detail = {k: hp[k] for k in ("batch_size", "grad_accum", "max_length", "packing", "finetune")}
            detail.update({k: v for k, v in lm_runtime.settings(run.config.get("causal_lm")).items()
                           if k in ("activation_checkpointing", "precision")})
            run.finish(None, status="oom", error_detail={**detail, "step": run.steps},
                       error=f"out of memory at batch_size={hp['batch_size']} (max_length={hp['max_length']}, "
                             f"step {run.steps}): {str(e).splitlines()[0]}")
            log.error("out of memory at batch_size=%s", hp["batch_size"])
            sys.exit(1)


if __name__ == "__main__":
    main()
