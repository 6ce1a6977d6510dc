"""Data of the causal-LM task: dataset records to token ids with a loss mask, batches, packing.

A record becomes an `Example`: token ids, and labels that are the ids where the model learns and IGNORE
elsewhere. How each spec is read:

    chat_sft_v1    {"messages": [...]}     rendered by the tokenizer's chat template; loss on every assistant
                                           turn and the special token that ends it (e.g. <|im_end|>)
    syllo_v1       {"puzzle", "answer"}    the chat [user: puzzle, assistant: answer]
    completion_v1  {"prompt", "completion"} plain text: prompt, then completion + EOS; loss on completion + EOS

A tokenizer without a chat template gets DEFAULT_CHAT_TEMPLATE (Zephyr's layout: `<|role|>` line, content,
EOS). Assistant tokens are found by character offsets in the rendered text, so any template works whose
rendering contains each assistant message's content verbatim.

With `data.source: queue` a run trains on the dataset it claimed from the queue (`autopilot.ingest.claims`).

Usage:
    records = read_records(path)
    examples = encode_all(tokenizer, records, "chat_sft_v1", max_length=1024)
    batch = collate(examples[:8], tokenizer.pad_token_id)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from autopilot.errors import TrainerError

log = logging.getLogger(__name__)

IGNORE = -100  # label of a token without loss (torch's cross_entropy ignore_index)
SPECS = ("chat_sft_v1", "completion_v1", "syllo_v1")
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
PROBE = [{"role": "user", "content": "PING"}, {"role": "assistant", "content": "PONG"}]


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_target(self) -> int:
        """Tokens that carry loss (after the one-token shift of causal-LM training)."""
        return sum(1 for t in self.labels[1:] if t != IGNORE)


# ---------------------------------------------------------------- records and templates

def read_records(path: Path) -> list[dict]:
    """The JSON objects of a JSON-lines file, in order."""
    records = []
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise TrainerError(f"{path}:{n}: not JSON ({e}); ingest checks files of the queue") from None
    if not records:
        raise TrainerError(f"{path}: no records")
    return records


def check_spec(spec: str) -> str:
    if spec not in SPECS:
        raise TrainerError(f"data spec must be one of {SPECS}, but got {spec!r}")
    return spec


def to_chat(record: dict, spec: str) -> list[dict]:
    """The conversation a chat or syllo record stands for."""
    if spec == "syllo_v1":
        return [{"role": "user", "content": record["puzzle"]}, {"role": "assistant", "content": record["answer"]}]
    return record["messages"]


def ensure_chat_template(tokenizer) -> None:
    if tokenizer.chat_template is None:
        log.info("the tokenizer has no chat template: using the default (<|role|> line, content, EOS)")
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    # enable_thinking=False: Qwen3's template then leaves an empty <think></think> as in its training data;
    # templates that do not know the flag ignore it
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                         enable_thinking=False)


def turn_end(tokenizer) -> str | None:
    """The special token the chat template puts right after an assistant message (<|im_end|>, <|eot_id|>...)."""
    text = render(tokenizer, PROBE)
    after = text[text.rindex("PONG") + len("PONG"):]
    for candidate in (after, after.lstrip()):
        for token in sorted(tokenizer.all_special_tokens, key=len, reverse=True):
            if token and candidate.startswith(token):
                return token
    return None


def assistant_spans(text: str, messages: list[dict], end: str | None) -> list[tuple[int, int]]:
    """Character spans of the assistant contents in the rendered `text`, each with the turn-end token after it."""
    spans, pos = [], 0
    for message in messages:
        content = message["content"]
        at = text.find(content, pos)
        if at < 0:  # some templates strip the content
            content = content.strip()
            at = text.find(content, pos)
        if at < 0:
            raise TrainerError(f"the chat template does not render the {message['role']} turn {content[:60]!r} "
                               "verbatim, so its tokens cannot be found")
        stop = at + len(content)
        if message["role"] == "assistant":
            if end is not None:
                gap = len(text[stop:]) - len(text[stop:].lstrip())
                if text.startswith(end, stop + gap):
                    stop += gap + len(end)
            spans.append((at, stop))
        pos = stop
    return spans


# ---------------------------------------------------------------- encoding

def encode_chat(tokenizer, messages: list[dict], end: str | None) -> Example:
    text = render(tokenizer, messages)
    spans = assistant_spans(text, messages, end)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = [
        tid if any(s < span_end and e > span_start for span_start, span_end in spans) else IGNORE
        for tid, (s, e) in zip(enc["input_ids"], enc["offset_mapping"], strict=True)
    ]
    return Example(list(enc["input_ids"]), labels)


def encode_completion(tokenizer, prompt: str, completion: str) -> Example:
    """Prompt and completion are tokenized apart, as at generation time (no merge across the boundary)."""
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    answer_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return Example(prompt_ids + answer_ids, [IGNORE] * len(prompt_ids) + answer_ids)


def encode(tokenizer, record: dict, spec: str, end: str | None) -> Example:
    if spec == "completion_v1":
        return encode_completion(tokenizer, record["prompt"], record["completion"])
    return encode_chat(tokenizer, to_chat(record, spec), end)


def truncate(example: Example, max_length: int) -> Example:
    return Example(example.input_ids[:max_length], example.labels[:max_length])


def encode_all(tokenizer, records: list[dict], spec: str, max_length: int) -> list[Example]:
    """Training examples: cut to `max_length` tokens; those left without any target token are dropped."""
    ensure_chat_template(tokenizer)
    end = turn_end(tokenizer)
    examples = [truncate(encode(tokenizer, r, spec, end), max_length) for r in records]
    kept = [e for e in examples if e.n_target > 0]
    if len(kept) < len(examples):
        log.warning("%d of %d examples have no answer token within max_length=%d and are left out",
                    len(examples) - len(kept), len(examples), max_length)
    if not kept:
        raise TrainerError(f"no training example has an answer token within max_length={max_length}")
    return kept


def pack(examples: list[Example], length: int) -> list[Example]:
    """Concatenate examples (in order) and cut the stream into sequences of `length` tokens.

    Attention is not masked at example boundaries (plain packing, as trl's `packing=True` without
    flash-attention's position ids); the last, shorter sequence is kept.
    """
    ids, labels = [], []
    for e in examples:
        ids += e.input_ids
        labels += e.labels
    return [Example(ids[i:i + length], labels[i:i + length]) for i in range(0, len(ids), length)]


def collate(examples: list[Example], pad_id: int) -> dict:
    """Right-padded tensors input_ids, attention_mask, labels (IGNORE on padding)."""
    import torch

    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, :len(e)] = torch.tensor(e.input_ids)
        labels[i, :len(e)] = torch.tensor(e.labels)
        mask[i, :len(e)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class MicroBatches:
    """The micro-batch stream of a run. Micro-batch g depends only on (seed, g): epoch g // per_epoch is a
    permutation seeded by (seed, epoch), so a run resumed at data position g sees exactly the same batches."""

    def __init__(self, examples: list[Example], batch_size: int, seed: int):
        self.examples = examples
        self.batch_size = batch_size
        self.seed = seed
        self.per_epoch = math.ceil(len(examples) / batch_size)
        self._order: tuple[int, list[int]] | None = None

    def order(self, epoch: int) -> list[int]:
        import torch

        if self._order is None or self._order[0] != epoch:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._order = (epoch, torch.randperm(len(self.examples), generator=gen).tolist())
        return self._order[1]

    def __getitem__(self, g: int) -> list[Example]:
        epoch, i = divmod(g, self.per_epoch)
        idx = self.order(epoch)[i * self.batch_size:(i + 1) * self.batch_size]
        return [self.examples[j] for j in idx]


def files_hash(*paths: Path) -> str:
    """sha256 over the bytes of the data files, in order (the manifest's data_hash)."""
    h = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()
