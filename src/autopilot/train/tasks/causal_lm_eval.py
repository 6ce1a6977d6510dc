"""Evaluation of the causal-LM task (DO NOT CHANGE — this is the fixed metric; no config key reaches it).

Every run of a study is measured here, the same way, on the study's fixed validation file:

    val_loss      mean over examples of each example's mean token loss on its answer tokens (lower is better)
    per example   those per-example mean token losses, in file order: the scores the judge pairs
    perplexity    exp(total answer-token loss / answer tokens), over the whole file
    exact_match   (completion_v1, syllo_v1 only) share of examples whose greedy generation from the prompt,
                  trimmed, equals the expected answer, trimmed; per example 1.0 or 0.0
    outputs       (asked for: `keep_outputs`) the generated texts themselves, for a skill's own grader

Nothing a proposal may change reaches this module: the trainer's `max_length`, batch size and precision do
not apply here. Sequences are cut to MAX_TOKENS (the model's context if shorter) from the left, so the
answer is always scored; batches are formed by length from the file alone. The hyperparameters of a run
change the model, never the measurement.

Usage:
    eval_set = build_eval_set(tokenizer, records, spec, max_positions=model.config.max_position_embeddings)
    result = evaluate(model, tokenizer, eval_set, device, progress=lambda: run.heartbeat("evaluate"))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from autopilot.errors import TrainerError
from autopilot.train import lm_data
from autopilot.train.lm_data import IGNORE, Example

GOALS = {"val_loss": "minimize", "exact_match": "maximize"}  # metrics with per-example scores, and their direction
PRIMARY = "val_loss"  # the primary metric of a causal-LM study
MAX_TOKENS = 2048  # longest sequence scored; a longer example keeps its last MAX_TOKENS tokens
BATCH_TOKENS = 8192  # padded tokens per loss batch (and at most BATCH_EXAMPLES examples)
BATCH_EXAMPLES = 16
GENERATION_BATCH = 16
EXTRA_NEW_TOKENS = 8  # generation may run this many tokens past the longest expected answer of its batch
MAX_NEW_TOKENS = 256
EXACT_MATCH_SPECS = ("completion_v1", "syllo_v1")


@dataclass(frozen=True)
class EvalSet:
    spec: str
    examples: list[Example]  # full sequences with answer labels, for the loss
    prompts: list[list[int]]  # prompt ids for generation (exact-match specs only, else empty)
    answers: list[str]  # expected answers (exact-match specs only)
    answer_tokens: list[int]


def build_eval_set(tokenizer, records: list[dict], spec: str, max_positions: int | None = None) -> EvalSet:
    lm_data.ensure_chat_template(tokenizer)
    end = lm_data.turn_end(tokenizer)
    limit = min(MAX_TOKENS, max_positions or MAX_TOKENS)
    examples = [_keep_tail(lm_data.encode(tokenizer, r, spec, end), limit) for r in records]
    empty = [n for n, e in enumerate(examples, 1) if e.n_target == 0]
    if empty:
        raise TrainerError(f"validation records {empty[:10]} have no answer token to score")
    prompts, answers, answer_tokens = [], [], []
    if spec in EXACT_MATCH_SPECS:
        for r in records:
            prompt, answer = _prompt_and_answer(tokenizer, r, spec)
            ids = tokenizer(prompt, add_special_tokens=spec == "completion_v1")["input_ids"]
            prompts.append(ids[-max(limit - MAX_NEW_TOKENS, limit // 2):])
            answers.append(answer.strip())
            answer_tokens.append(len(tokenizer(answer, add_special_tokens=False)["input_ids"]))
    return EvalSet(spec, examples, prompts, answers, answer_tokens)


def _keep_tail(example: Example, limit: int) -> Example:
    return Example(example.input_ids[-limit:], example.labels[-limit:])


def _prompt_and_answer(tokenizer, record: dict, spec: str) -> tuple[str, str]:
    if spec == "completion_v1":
        return record["prompt"], record["completion"]
    chat = lm_data.to_chat(record, spec)
    return lm_data.render(tokenizer, chat[:-1], add_generation_prompt=True), chat[-1]["content"]


def _batches(lengths: list[int]) -> list[list[int]]:
    """Indices grouped by length (longest first) into batches of at most BATCH_TOKENS padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches, current = [], []
    for i in order:
        if current and (len(current) + 1) * lengths[current[0]] > BATCH_TOKENS or len(current) == BATCH_EXAMPLES:
            batches.append(current)
            current = []
        current.append(i)
    return batches + ([current] if current else [])


@torch.no_grad()
def example_losses(model, eval_set: EvalSet, pad_id: int, device: torch.device,
                   progress: Callable[[], None]) -> tuple[list[float], float, int]:
    """Per-example mean answer-token loss (file order), total loss and answer-token count."""
    losses = [0.0] * len(eval_set.examples)
    total, count = 0.0, 0
    for idx in _batches([len(e) for e in eval_set.examples]):
        batch = {k: v.to(device) for k, v in lm_data.collate([eval_set.examples[i] for i in idx], pad_id).items()}
        with _autocast(device):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        for row, i in enumerate(idx):  # one row at a time: float32 logits of a whole batch may not fit
            labels = batch["labels"][row, 1:]
            nll = F.cross_entropy(logits[row, :-1].float(), labels, ignore_index=IGNORE, reduction="sum")
            n = int((labels != IGNORE).sum())
            losses[i] = float(nll) / n
            total, count = total + float(nll), count + n
        progress()
    return losses, total, count


class _Heartbeat(StoppingCriteria):
    """Calls `progress` after every generated token; never stops generation itself."""

    def __init__(self, progress: Callable[[], None]):
        self.progress = progress

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        self.progress()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def exact_match(model, tokenizer, eval_set: EvalSet, device: torch.device,
                progress: Callable[[], None]) -> tuple[list[float], list[str]]:
    """1.0 where greedy generation from the prompt equals the answer (both trimmed), else 0.0, and the generated
    texts; file order."""
    stop_ids = [tokenizer.eos_token_id]
    end = lm_data.turn_end(tokenizer)
    if end is not None:
        stop_ids.append(tokenizer.convert_tokens_to_ids(end))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    correct = [0.0] * len(eval_set.prompts)
    texts = [""] * len(eval_set.prompts)
    order = sorted(range(len(eval_set.prompts)), key=lambda i: (-len(eval_set.prompts[i]), i))
    for start in range(0, len(order), GENERATION_BATCH):
        idx = order[start:start + GENERATION_BATCH]
        width = max(len(eval_set.prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(idx):  # left padding: every prompt ends where generation starts
            prompt = eval_set.prompts[i]
            ids[row, width - len(prompt):] = torch.tensor(prompt)
            mask[row, width - len(prompt):] = 1
        config = GenerationConfig(
            max_new_tokens=min(MAX_NEW_TOKENS, max(eval_set.answer_tokens[i] for i in idx) + EXTRA_NEW_TOKENS),
            do_sample=False, eos_token_id=stop_ids, pad_token_id=pad_id)
        with _autocast(device):
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config,
                                 stopping_criteria=StoppingCriteriaList([_Heartbeat(progress)]))
        for row, i in enumerate(idx):
            texts[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True)
            correct[i] = float(texts[i].strip() == eval_set.answers[i])
        progress()
    return correct, texts


def evaluate(model, tokenizer, eval_set: EvalSet, device: torch.device, progress: Callable[[], None],
             generate: bool = True, keep_outputs: bool = False) -> dict:
    """Every metric of the eval set; `per_example` maps each metric with per-example scores to them; `outputs`
    holds the generated texts when `keep_outputs` (exact-match specs only, else None)."""
    was_training = model.training
    model.eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    losses, total, count = example_losses(model, eval_set, pad_id, device, progress)
    result = {"metrics": {"val_loss": sum(losses) / len(losses), "perplexity": math.exp(min(total / count, 50.0)),
                          "val_examples": float(len(losses)), "val_tokens": float(count)},
              "per_example": {"val_loss": losses}, "outputs": None}
    if generate and eval_set.spec in EXACT_MATCH_SPECS:
        correct, texts = exact_match(model, tokenizer, eval_set, device, progress)
        result["metrics"]["exact_match"] = sum(correct) / len(correct)
        result["per_example"]["exact_match"] = correct
        result["outputs"] = texts if keep_outputs else None
    model.train(was_training)
    return result


def _autocast(device: torch.device):
    """bf16 autocast on a CUDA device that supports it (as in training there), nothing elsewhere."""
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
