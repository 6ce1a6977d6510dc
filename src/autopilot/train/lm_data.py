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

With `packing`, whole examples are packed into rows of at most max_length tokens (best fit, none split), and
each row carries its documents' lengths: `collate` turns them into position ids that restart at every
document, and no attention mask, so the model masks attention to within each document (transformers builds a
block-diagonal causal mask from such position ids for sdpa and eager attention; flash-attention gets the rows
flattened into one sequence and runs varlen). A document's first token is never a target, as unpacked.

With `data.source: queue` a run trains on the dataset it claimed from the queue (`autopilot.ingest.claims`).

Usage:
    records = read_records(path)
    examples = encode_all(tokenizer, records, "chat_sft_v1", max_length=1024)
    batch = collate(examples[:8], tokenizer.pad_token_id)
    rows = pack(examples, 1024); batch = collate(rows[:8], pad_id, width=1024)   # position_ids, no mask
"""

from __future__ import annotations

import bisect
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
    documents: tuple[int, ...] = ()  # a packed row: the lengths of the documents in it, in order; () - one example

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


def encode_records(tokenizer, records: list[dict], spec: str) -> list[Example]:
    """Every record encoded whole (no cut): what the token cache keeps (autopilot.train.token_cache)."""
    ensure_chat_template(tokenizer)
    end = turn_end(tokenizer)
    return [encode(tokenizer, r, spec, end) for r in records]


def select(examples: list[Example], max_length: int) -> list[Example]:
    """Training examples: cut to `max_length` tokens; those left without any target token are dropped."""
    cut = [truncate(e, max_length) for e in examples]
    kept = [e for e in cut if e.n_target > 0]
    if len(kept) < len(cut):
        log.warning("%d of %d examples have no answer token within max_length=%d and are left out",
                    len(cut) - len(kept), len(cut), max_length)
    if not kept:
        raise TrainerError(f"no training example has an answer token within max_length={max_length}")
    return kept


def encode_all(tokenizer, records: list[dict], spec: str, max_length: int) -> list[Example]:
    """Training examples of `records`, cut to `max_length` tokens (see `select`)."""
    return select(encode_records(tokenizer, records, spec), max_length)


def pack(examples: list[Example], length: int) -> list[Example]:
    """Whole examples packed into rows of at most `length` tokens, best fit decreasing; none is split.

    Each row records its documents' lengths (collate turns them into position ids that restart per
    document, which keeps attention within each document), and each document's first label is IGNORE:
    it has no context to be predicted from, as the first token of an unpacked example. The rows come in
    a fixed order (the batch stream shuffles them); examples longer than `length` must be cut first.
    """
    too_long = [len(e) for e in examples if len(e) > length]
    if too_long:
        raise ValueError(f"pack: {len(too_long)} examples are longer than {length} tokens; cut them first")
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i]), i))
    rows: list[list[int]] = []  # example indices per row
    free: list[tuple[int, int]] = []  # (room left, row), sorted: the best fit is the first with enough room
    for i in order:
        at = bisect.bisect_left(free, (len(examples[i]), -1))
        if at == len(free):
            rows.append([])
            room, row = length, len(rows) - 1
        else:
            room, row = free.pop(at)
        rows[row].append(i)
        if room - len(examples[i]) > 0:
            bisect.insort(free, (room - len(examples[i]), row))
    return [_join([examples[i] for i in row]) for row in rows]


def _join(documents: list[Example]) -> Example:
    ids, labels = [], []
    for d in documents:
        ids += d.input_ids
        labels += [IGNORE] + d.labels[1:]
    return Example(ids, labels, tuple(len(d) for d in documents))


def collate(examples: list[Example], pad_id: int, width: int | None = None, flatten: bool = False) -> dict:
    """Right-padded tensors (to `width`, default the longest) of examples, or of packed rows.

    Examples: input_ids, attention_mask, labels (IGNORE on padding). Packed rows: input_ids, position_ids
    that restart at every document (the padding after the last is a document of its own), labels; no
    attention mask, so that the model keeps attention within documents. `flatten` puts packed rows end to
    end in one sequence (flash-attention's varlen kernels find the documents from the position ids there).
    """
    import torch

    width = max([len(e) for e in examples] + [width or 0])
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, :len(e)] = torch.tensor(e.input_ids)
        labels[i, :len(e)] = torch.tensor(e.labels)
    if not examples[0].documents:
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        for i, e in enumerate(examples):
            mask[i, :len(e)] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
    positions = torch.tensor([position_ids(e, width) for e in examples], dtype=torch.long)
    batch = {"input_ids": ids, "position_ids": positions, "labels": labels}
    return {k: v.reshape(1, -1) for k, v in batch.items()} if flatten else batch


def position_ids(row: Example, width: int) -> list[int]:
    """0, 1, ... restarting at each document of a packed row, and at its padding up to `width`."""
    out = []
    for n in row.documents + ((width - len(row),) if width > len(row) else ()):
        out += range(n)
    return out


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
