"""The study's settings, parsed once into small frozen dataclasses that the stages take.

`schemas/config.schema.yaml` stays the one source of every key's meaning and default: a config is validated and
given its defaults there (`autopilot.study.check_config`) before it is parsed here, so no default is written in
Python. Each dataclass holds exactly the keys of its block (tests/test_settings.py compares the two), lists become
tuples, and nothing here reads a file.

Usage:
    settings = StudySettings.parse(config)      # config: validated, defaults filled
    settings.judge.alpha, settings.budget.max_runs, settings.metric.maximize
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin, get_type_hints


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


class Block:
    """A block of the config (`judge:`, `budget:`...): built from its mapping, which the schema closed and filled."""

    @classmethod
    def parse(cls, block: dict | None):
        return cls(**{k: _frozen(v) for k, v in (block or {}).items()})


@dataclass(frozen=True)
class Metric(Block):
    name: str
    goal: Literal["maximize", "minimize"]

    @property
    def maximize(self) -> bool:
        return self.goal == "maximize"


@dataclass(frozen=True)
class Tpe(Block):
    n_startup_trials: int
    multivariate: bool
    max_history: int


@dataclass(frozen=True)
class LLM(Block):
    backend: Literal["openai", "command"]
    base_url: str
    model: str
    api_key_env: str | None
    command: tuple[str, ...] | None
    temperature: float
    max_tokens: int
    timeout_seconds: float
    retries: int
    backoff_seconds: float
    goal: str | None
    template: str | None
    max_prompt_chars: int
    recent_runs: int
    hybrid_share: float
    max_attempts: int


@dataclass(frozen=True)
class MentorLLM(Block):
    """`mentor.llm`: the mentor's own LLM; a field left None is the study's `llm` value."""

    backend: Literal["openai", "command"] | None = None
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    command: tuple[str, ...] | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout_seconds: float | None = None


@dataclass(frozen=True)
class Mentor(Block):
    every_n_runs: int
    when_stuck_after: int
    template: str | None
    llm: MentorLLM | None = None

    @classmethod
    def parse(cls, block: dict | None):
        block = dict(block or {})
        own = block.pop("llm", None)
        return cls(**{k: _frozen(v) for k, v in block.items()}, llm=None if own is None else MentorLLM.parse(own))


@dataclass(frozen=True)
class Budget(Block):
    max_runs: int
    max_seconds_per_run: float
    max_total_seconds: float
    max_retries: int


@dataclass(frozen=True)
class Daemon(Block):
    poll_seconds: float
    plateau_runs: int
    failure_window: int
    max_failures: int
    max_wall_seconds: float | None


@dataclass(frozen=True)
class Constraints(Block):
    """`judge.constraints`: limits no promoted run may break (autopilot.judge.protocol); None: no limit."""

    max_peak_memory_mb: float | None
    max_wall_seconds: float | None
    max_parameters: int | None


@dataclass(frozen=True)
class Judge(Block):
    """`judge:` the seed protocol (autopilot.judge.protocol)."""

    confidence: float
    bootstrap_samples: int
    noise_seeds: int
    select_seeds: int
    confirm_seeds: int
    record_seeds: int
    incumbent_seeds: int
    alpha: float
    confirm_alpha: float
    noise_keys: tuple[str, ...]
    constraints: Constraints

    @classmethod
    def parse(cls, block: dict | None):
        block = dict(block or {})
        limits = Constraints.parse(block.pop("constraints", None))
        return cls(**{k: _frozen(v) for k, v in block.items()}, constraints=limits)


@dataclass(frozen=True)
class Data(Block):
    split_seed: int
    source: Literal["file", "queue"]
    train_file: str | None = None  # causal_lm only (the schema requires them there)
    val_file: str | None = None
    test_file: str | None = None  # held out: only the champion's test evaluation reads it
    spec: str | None = None


@dataclass(frozen=True)
class EvalSet(Block):
    """One of `continual.eval_sets`: a fixed evaluation set of the study besides data.val_file."""

    name: str
    file: str
    spec: Literal["chat_sft_v1", "completion_v1", "syllo_v1"]
    max_loss_rise: float | None = None  # None: continual.max_loss_rise


@dataclass(frozen=True)
class Continual(Block):
    """`continual`: how a continual study (mode continual) judges a challenger against its champion."""

    eval_sets: tuple[EvalSet, ...]
    max_loss_rise: float
    alpha: float

    @classmethod
    def parse(cls, block: dict | None):
        block = dict(block or {})
        sets = tuple(EvalSet.parse(s) for s in block.pop("eval_sets", ()))
        return cls(**{k: _frozen(v) for k, v in block.items()}, eval_sets=sets)


@dataclass(frozen=True)
class Curriculum(Block):
    """`curriculum`: generated skill data with levels (autopilot.curriculum)."""

    enabled: bool
    skills: tuple[Literal["binary", "syllo"], ...]
    batch_size: int
    eval_size: int
    replay_share: float
    advance_at: float
    window: int
    min_queue: int
    priority: Literal["high", "normal", "low"]


@dataclass(frozen=True)
class Ingest(Block):
    default_spec: str | None
    default_priority: Literal["high", "normal", "low"]
    level: Literal["quick", "standard", "deep"]
    settle_seconds: float
    max_file_bytes: int
    max_chars: int
    max_line_bytes: int
    tokenizer: str | None
    max_tokens: int | None
    eval_file: str | None


@dataclass(frozen=True)
class Model(Block):
    path: str


@dataclass(frozen=True)
class CausalLM(Block):
    """`causal_lm:` how the causal-LM task uses the hardware (autopilot.train.lm_runtime resolves `auto`)."""

    precision: Literal["auto", "fp32", "bf16_autocast", "bf16_pure"]
    attention: Literal["auto", "sdpa", "flash_attention_2", "eager"]
    adamw: Literal["fused", "foreach", "for_loop"]
    compile: Literal["auto"] | bool
    activation_checkpointing: bool


@dataclass(frozen=True)
class MetricsFrom(Block):
    """`trainer.metrics_from`: where the metrics of a script that does not keep the trainer contract are read."""

    source: Literal["contract", "stdout", "json_file", "tensorboard"]
    patterns: types.MappingProxyType | None  # metric name -> regular expression
    path: str | None
    loss: str | None
    step: str
    per_example: str | None

    @classmethod
    def parse(cls, block: dict | None):
        block = dict(block or {})
        if block.get("patterns") is not None:
            block["patterns"] = types.MappingProxyType(dict(block["patterns"]))
        return cls(**block)

    def as_dict(self) -> dict:
        """The block as plain JSON-able data (the adapter gets it on its command line)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: dict(v) if isinstance(v, types.MappingProxyType) else v for k, v in values.items()}


@dataclass(frozen=True)
class Trainer(Block):
    args: Literal["none", "flags", "hydra"]
    metrics_from: MetricsFrom
    command: tuple[str, ...] | None = None  # required when task is `command` (study.check_config)
    test_command: tuple[str, ...] | None = None  # the champion's held-out test; None: the study has none

    @classmethod
    def parse(cls, block: dict | None):
        block = dict(block or {})
        return cls(**{**{k: _frozen(v) for k, v in block.items()}, "metrics_from": MetricsFrom.parse(
            block.get("metrics_from"))})


@dataclass(frozen=True)
class Registry(Block):
    lora: Literal["merge", "adapter"]


@dataclass(frozen=True)
class Retention(Block):
    keep_champions: int
    keep_last_runs: int | None
    min_free_gib: float | None


@dataclass(frozen=True)
class Serve(Block):
    api_key_env: str
    host: str
    port: int
    max_tokens: int
    reload_seconds: float


@dataclass(frozen=True)
class Notify(Block):
    command: tuple[str, ...] | None
    on: tuple[str, ...]
    timeout_seconds: float


@dataclass(frozen=True)
class Evaluator(Block):
    """`code_mode.evaluator`: the sealed evaluator's command, its code files and its time limit."""

    files: tuple[str, ...]
    timeout_seconds: float
    command: tuple[str, ...] | None = None  # required when code mode is on (study.check_config)


@dataclass(frozen=True)
class CodeMode(Block):
    """`code_mode`: patches to the study's own training code (autopilot.code)."""

    enabled: bool
    every_n_runs: int
    files: tuple[str, ...]
    protected: tuple[str, ...]
    evaluator: Evaluator
    sealed: tuple[str, ...]
    max_patch_lines: int
    max_attempts: int
    approval: Literal["none", "required"]
    test_command: tuple[str, ...] | None
    smoke_steps: int
    check_seconds: float
    memory_mb: int | None
    env: tuple[str, ...]
    agent_network: bool
    agent_env: tuple[str, ...]
    strict_sandbox: bool

    @classmethod
    def parse(cls, block: dict | None):
        block = dict(block or {})
        evaluator = Evaluator.parse(block.pop("evaluator", None))
        return cls(**{k: _frozen(v) for k, v in block.items()}, evaluator=evaluator)


@dataclass(frozen=True)
class StudySettings:
    """Every setting of one study; `baseline` and `search_space` stay mappings (their keys are the study's own)."""

    study: str
    iterations: int
    generation_size: int
    task: Literal["cnn_digits", "causal_lm", "command"]
    seed: int
    policy: Literal["tpe", "random", "manual", "llm", "hybrid"]
    fallback_policy: Literal["tpe", "random"]
    container_image: str | None
    metric: Metric
    baseline: types.MappingProxyType
    search_space: types.MappingProxyType
    tpe: Tpe
    llm: LLM
    mentor: Mentor
    budget: Budget
    daemon: Daemon
    judge: Judge
    data: Data
    mode: Literal["search", "continual"]
    continual: Continual
    curriculum: Curriculum
    ingest: Ingest
    causal_lm: CausalLM
    registry: Registry
    retention: Retention
    serve: Serve
    notify: Notify
    code_mode: CodeMode
    model: Model | None = None
    trainer: Trainer | None = None

    @classmethod
    def parse(cls, config: dict) -> StudySettings:
        hints = get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in config:
                continue
            block = _block_class(hints[f.name])
            raw = config[f.name]
            if block is not None:
                values[f.name] = block.parse(raw)
            elif isinstance(raw, dict):
                values[f.name] = types.MappingProxyType(raw)
            else:
                values[f.name] = raw
        return cls(**values)

    @property
    def uses_llm(self) -> bool:
        """The policy asks an LLM for some runs at least (its proposals of a generation go one after another)."""
        return self.policy in ("llm", "hybrid") or self.code_mode.enabled

    @property
    def is_continual(self) -> bool:
        """Mode continual: runs train the champion further on queued data (autopilot.continual)."""
        return self.mode == "continual"


def _block_class(hint) -> type[Block] | None:
    """The Block class of a field's type hint (`Model | None` -> Model), or None for plain values."""
    candidates = get_args(hint) if get_origin(hint) in (types.UnionType,) else (hint,)
    for c in candidates:
        if isinstance(c, type) and issubclass(c, Block):
            return c
    return None


BLOCKS = {f.name: _block_class(get_type_hints(StudySettings)[f.name]) for f in dataclasses.fields(StudySettings)
          if _block_class(get_type_hints(StudySettings)[f.name]) is not None}
"""The config's blocks and their classes: tests compare each class's fields with its schema block."""
