"""Build the tiny causal LM of the example study (config/studies/lm_sft.yaml) into models/tiny-lm/.

A byte-level BPE tokenizer trained on the bundled chat data and a 4-layer, hidden-64 Qwen3 with random
weights (about 0.3M parameters), saved with save_pretrained: a local stand-in for a real model folder such as
Qwen3-0.6B, loaded the same way. Nothing is downloaded. `--data` rewrites the bundled data files first
(synthetic arithmetic and word tasks; the validation and held-out test files hold no question of the training
file, nor of each other).

It needs the `lm` extra (transformers, tokenizers), like the study it is for; without it, it prints the command
that installs it.

Usage:
    python examples/make_tiny_lm.py                    # -> models/tiny-lm/
    python examples/make_tiny_lm.py --data --out models/tiny-lm
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from autopilot import fsio
from autopilot.train import lm_tiny
from autopilot.train.tasks import missing_extra

DATA = Path(__file__).resolve().parent / "data"
TRAIN, VAL = DATA / "chat_sft_small.jsonl", DATA / "chat_sft_small_val.jsonl"
TEST = DATA / "chat_sft_small_test.jsonl"  # held out: only the champion is scored on it, once per promotion


def questions(record: dict) -> set[str]:
    return {m["content"] for m in record["messages"] if m["role"] == "user"}


def write_data() -> None:
    train = lm_tiny.synthetic_chat(400, seed=0)
    seen = set().union(*map(questions, train))
    val = [r for r in lm_tiny.synthetic_chat(400, seed=1) if not questions(r) & seen][:64]
    seen |= set().union(*map(questions, val))
    test = [r for r in lm_tiny.synthetic_chat(400, seed=2) if not questions(r) & seen][:64]
    for path, records in ((TRAIN, train), (VAL, val), (TEST, test)):
        fsio.atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
        click.echo(f"wrote {len(records)} records to {path}")


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("models/tiny-lm"), show_default=True)
@click.option("--data", "rewrite_data", is_flag=True, help="Rewrite examples/data/ before building.")
def main(out: Path, rewrite_data: bool) -> None:
    """Build the tokenizer and model of the example study."""
    if missing_extra("causal_lm"):
        raise click.ClickException(missing_extra("causal_lm"))
    if rewrite_data:
        write_data()
    records = [json.loads(line) for path in (TRAIN, VAL) for line in path.read_text(encoding="utf-8").splitlines()]
    lm_tiny.build_tiny_lm(out, lm_tiny.corpus(records), vocab_size=512, hidden=64, layers=4, heads=4, kv_heads=2,
                          max_positions=512)
    click.echo(f"built {out} (tokenizer and model; nothing downloaded)")


if __name__ == "__main__":
    main()
