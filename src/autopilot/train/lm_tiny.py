"""Tiny causal language models built locally: a BPE tokenizer trained with `tokenizers` and a small Qwen3
model from a config, saved with `save_pretrained`. Nothing is downloaded.

They stand in for a real model (e.g. Qwen3-0.6B in a local folder) in the tests, the example study and the
throughput benchmark, and go through the same loading path (`from_pretrained(..., local_files_only=True)`).
The synthetic chat data (arithmetic and word tasks) is what the example study fine-tunes on.

Usage:
    tokenizer = build_tokenizer(texts, vocab_size=512)
    build_model(folder, tokenizer, hidden=64, layers=2)        # writes model + tokenizer into folder
    records = synthetic_chat(400, seed=0)                      # chat_sft_v1 records
"""

from __future__ import annotations

import random
from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = ["apple", "river", "planet", "garden", "silver", "window", "candle", "forest", "rocket", "pencil",
         "yellow", "orange", "basket", "dragon", "summer", "winter", "castle", "bridge", "mirror", "button"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
SYSTEM_PROMPTS = ["You are a concise assistant.", "Answer briefly and exactly."]


def build_tokenizer(texts: list[str], vocab_size: int = 512, chat_template: str | None = CHATML_TEMPLATE):
    """A byte-level BPE tokenizer trained on `texts`, wrapped as a transformers tokenizer with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>",
                                        additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tokenizer.chat_template = chat_template
    return tokenizer


def model_config(vocab_size: int, hidden: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                 intermediate: int | None = None, max_positions: int = 1024, eos_token_id: int | None = None,
                 pad_token_id: int | None = None):
    """A Qwen3 config; head_dim = hidden // heads. Weights are drawn with std 1/sqrt(hidden) (not 0.02), so
    that a tiny model's tied embeddings give logits of a usable range and LoRA alone can move its loss."""
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate or 3 * hidden,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        head_dim=hidden // heads, max_position_embeddings=max_positions, tie_word_embeddings=True,
        eos_token_id=eos_token_id, pad_token_id=pad_token_id, bos_token_id=None, initializer_range=hidden**-0.5,
    )


def build_model(folder: Path, tokenizer, seed: int = 0, vocab_size: int | None = None, **size) -> Path:
    """Save a randomly initialised Qwen3 model of the given size and `tokenizer` into `folder`. `vocab_size`
    (default: the tokenizer's) may be larger, to give a benchmark model the output layer of a real one."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = model_config(max(vocab_size or 0, len(tokenizer)), eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id, **size)
    model = AutoModelForCausalLM.from_config(config)
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_lm(folder: Path, texts: list[str], vocab_size: int = 512, seed: int = 0,
                  chat_template: str | None = CHATML_TEMPLATE, model_vocab_size: int | None = None, **size) -> Path:
    """Tokenizer trained on `texts` plus a model of `size` (see model_config), saved together in `folder`."""
    return build_model(folder, build_tokenizer(texts, vocab_size, chat_template), seed=seed,
                       vocab_size=model_vocab_size, **size)


# ---------------------------------------------------------------- synthetic data

def _task(rng: random.Random) -> tuple[str, str]:
    """One question and its exact answer."""
    kind = rng.randrange(5)
    if kind == 0:
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        return f"What is {a} + {b}?", f"{a} + {b} = {a + b}."
    if kind == 1:
        a, b = rng.randint(10, 99), rng.randint(0, 9)
        return f"What is {a} minus {b}?", f"{a} - {b} = {a - b}."
    if kind == 2:
        word = rng.choice(WORDS)
        return f"Reverse the word '{word}'.", word[::-1]
    if kind == 3:
        word = rng.choice(WORDS)
        return f"Write '{word}' in capital letters.", word.upper()
    i = rng.randrange(7)
    return f"Which day comes after {DAYS[i]}?", f"{DAYS[(i + 1) % 7]}."


def synthetic_chat(n: int, seed: int = 0) -> list[dict]:
    """`n` chat_sft_v1 records: one or two question/answer turns, sometimes after a system prompt."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        messages = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}] if rng.random() < 0.3 else []
        for _ in range(1 + (rng.random() < 0.25)):
            question, answer = _task(rng)
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        records.append({"id": f"chat-{seed}-{i:05d}", "messages": messages})
    return records


def synthetic_completion(n: int, seed: int = 0) -> list[dict]:
    """`n` completion_v1 records with one exact answer each (for exact-match evaluation)."""
    rng = random.Random(seed)
    return [dict(zip(("prompt", "completion"), _task(rng), strict=True), id=f"comp-{seed}-{i:05d}")
            for i in range(n)]


def corpus(records: list[dict]) -> list[str]:
    """Every text of chat or completion records, for training a tokenizer."""
    texts = []
    for r in records:
        texts += [m["content"] for m in r.get("messages", [])] + [r.get("prompt", ""), r.get("completion", "")]
    return [t for t in texts if t] + [f"{r}\n" for r in ("system", "user", "assistant")]
