"""How the causal-LM task uses the hardware: precision, attention kernel, AdamW, torch.compile, recomputation.

These are the study's `causal_lm:` settings (schemas/config.schema.yaml holds their defaults and meaning),
which the guard copies into config.json. None of them changes what a run learns beyond rounding:
tests/test_lm_runtime.py trains the tiny model with each and compares its losses with eager fp32. `resolve`
turns `auto` into what this machine gets, and the trainer records the outcome (and why compilation fell back
to eager, when it did) as `runtime` in trainer_summary.json.

    precision   fp32; bf16_autocast - fp32 weights (a LoRA's frozen base in bf16), matmuls in bf16 under
                autocast; bf16_pure - bf16 weights, gradients and activations, with fp32 master copies of
                the trained weights in the optimizer (the update is made in fp32 and rounded once a step)
    attention   sdpa (PyTorch's fused kernels), flash_attention_2 (the flash-attn package), eager
    adamw       fused (one kernel for all parameters), foreach (a few kernels per step), for_loop
    compile     torch.compile of the model's forward and backward; a failure at the first step falls back
                to eager for the rest of the run, and the step is trained again

Usage:
    rt = resolve(config.get("causal_lm"), finetune="full")
    opt = Optimizer(model, rt, lr=2e-4, weight_decay=0.0)   # .adamw is the torch optimizer for a scheduler
    forward = Forward(model, rt.compile)                    # forward(**batch); forward.fall_back(error)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from autopilot import schemas
from autopilot.errors import TrainerError
from autopilot.study import fill_defaults

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16_autocast", "bf16_pure")
ATTENTIONS = ("sdpa", "flash_attention_2", "eager")
ADAMWS = ("fused", "foreach", "for_loop")


def settings(section: dict | None) -> dict:
    """The `causal_lm` settings of config.json with the schema's defaults where a key is missing."""
    return fill_defaults(dict(section or {}), schemas.load("config")["properties"]["causal_lm"])


@dataclass(frozen=True)
class Runtime:
    """The settings as resolved for this machine and run."""

    device: torch.device
    precision: str
    weights: torch.dtype  # dtype the model is loaded in
    attention: str
    adamw: str
    compile: bool
    activation_checkpointing: bool

    @property
    def autocast(self) -> torch.dtype | None:
        return torch.bfloat16 if self.precision == "bf16_autocast" else None

    @property
    def master_weights(self) -> bool:
        return self.precision == "bf16_pure"

    def context(self):
        """The autocast region of a forward pass (a no-op unless bf16_autocast)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast is not None)

    def record(self) -> dict:
        return {"device": str(self.device), "precision": self.precision, "attention": self.attention,
                "adamw": self.adamw, "compile": self.compile, "activation_checkpointing": self.activation_checkpointing}


def resolve(section: dict | None, finetune: str, device: torch.device | None = None) -> Runtime:
    s = settings(section)
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = _precision(s["precision"], device)
    weights = torch.float32
    if precision == "bf16_pure" or (precision == "bf16_autocast" and finetune == "lora"):
        weights = torch.bfloat16  # pure: everything; autocast: a LoRA's frozen base (its adapters stay fp32)
    return Runtime(device=device, precision=precision, weights=weights, attention=_attention(s["attention"], device),
                   adamw=s["adamw"], compile=device.type == "cuda" if s["compile"] == "auto" else bool(s["compile"]),
                   activation_checkpointing=s["activation_checkpointing"])


def _precision(setting: str, device: torch.device) -> str:
    if setting == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return "bf16_autocast" if bf16 else "fp32"
    if setting != "fp32" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise TrainerError(f"causal_lm.precision is {setting}, but {torch.cuda.get_device_name()} has no bf16: "
                           "use precision fp32 (or auto)")
    return setting


def flash_attention_available() -> bool:
    from transformers.utils import is_flash_attn_2_available

    return is_flash_attn_2_available()


def _attention(setting: str, device: torch.device) -> str:
    flash = device.type == "cuda" and flash_attention_available()
    if setting == "auto":
        return "flash_attention_2" if flash else "sdpa"
    if setting == "flash_attention_2" and not flash:
        raise TrainerError("causal_lm.attention is flash_attention_2, but the flash-attn package is not installed "
                           "or there is no CUDA device: pip install flash-attn, or use attention sdpa (or auto)")
    return setting


# ---------------------------------------------------------------- the optimizer

class Optimizer:
    """AdamW over the trainable parameters (weight decay on matrices only), with fp32 master weights when
    the model's are bf16 (bf16_pure): gradients are copied up, AdamW steps the masters in fp32, and the
    model's weights are rounded from them. Clipping sees the fp32 gradients."""

    def __init__(self, model: torch.nn.Module, rt: Runtime, lr: float, weight_decay: float):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.master = [p.detach().float().clone() for p in self.params] if rt.master_weights else None
        stepped = self.master if self.master is not None else self.params
        groups = [{"params": [m for m, p in zip(stepped, self.params, strict=True) if p.ndim >= 2],
                   "weight_decay": weight_decay},
                  {"params": [m for m, p in zip(stepped, self.params, strict=True) if p.ndim < 2],
                   "weight_decay": 0.0}]
        impl = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for_loop": {"foreach": False}}[rt.adamw]
        self.adamw = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, **impl)

    def step(self, max_grad_norm: float) -> None:
        """Clip (0: no clipping), step, and clear the gradients."""
        if self.master is not None:
            for m, p in zip(self.master, self.params, strict=True):
                m.grad = p.grad.float() if p.grad is not None else None
                p.grad = None
        stepped = self.master if self.master is not None else self.params
        if max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(stepped, max_grad_norm)
        self.adamw.step()
        self.adamw.zero_grad(set_to_none=True)
        if self.master is not None:
            with torch.no_grad():
                torch._foreach_copy_(self.params, self.master)

    def zero_grad(self) -> None:
        for p in self.params + (self.master or []):
            p.grad = None

    def state_dict(self) -> dict:
        state = {"adamw": self.adamw.state_dict()}
        if self.master is not None:
            state["master"] = [m.detach().cpu() for m in self.master]
        return state

    def load_state_dict(self, state: dict) -> None:
        self.adamw.load_state_dict(state["adamw"])
        if (self.master is None) != ("master" not in state):
            raise TrainerError("the checkpoint's optimizer was made with another causal_lm.precision "
                               "(fp32 master weights or none): resume with the precision it was started with")
        if self.master is not None:
            with torch.no_grad():
                for m, saved, p in zip(self.master, state["master"], self.params, strict=True):
                    m.copy_(saved)
                    p.copy_(m)


# ---------------------------------------------------------------- compilation

class Forward:
    """The model as the training step calls it: compiled when asked, eager after compilation failed.

    torch.compile compiles on the first call, so a failure (no C compiler for the CPU backend, an
    unsupported operation, a Triton error) shows at the first step's forward or backward; `fall_back`
    then switches to the eager model, keeps the reason, and the caller trains that step again.
    """

    def __init__(self, model: torch.nn.Module, compile: bool):
        self.model = model
        self.compiled = compile
        self.error: str | None = None
        self.proven = not compile  # a compiled step has completed: later errors are the run's own
        self._call = torch.compile(model) if compile else model

    def __call__(self, **batch):
        return self._call(**batch)

    def step_done(self) -> None:
        self.proven = True

    def fall_back(self, error: BaseException) -> bool:
        """Go eager after `error` if it may come from compilation (the first compiled step, not OOM)."""
        if self.proven or isinstance(error, torch.OutOfMemoryError):
            return False
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        self.error = f"{type(error).__name__}: {' '.join(lines[:3])}"[:500]  # dynamo names the cause on line 2
        log.warning("torch.compile failed at the first step, training in eager mode: %s", self.error)
        self.compiled, self.proven, self._call = False, True, self.model
        return True

    def record(self) -> dict:
        return {"compiled": self.compiled, "compile_error": self.error}
