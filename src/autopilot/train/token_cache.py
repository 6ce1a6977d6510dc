"""Tokenized training data, kept by content: a dataset is tokenized once per tokenizer, not once per run.

Rendering chat templates and tokenizing costs about 0.3 ms a record on one CPU core (measured on the tiny
model's synthetic chats), so a study of many runs on a 100,000-record file would spend half a minute of
every run on it before its first step. The key of a cache entry is a hash of everything the tokens depend
on: the bytes of the data file, its spec, the files of the tokenizer (every file of the model folder but the
weights), the versions of transformers and tokenizers, and the source of autopilot.train.lm_data, which
holds the encoding. Change any of them and the file is tokenized again. An entry stores the examples whole
(uncut); `max_length` and packing apply after loading. Entries are written atomically; a damaged one is
tokenized again; only the newest KEEP entries are kept.

Layout: <root>/cache/tokens/<key>.npz with `ids` (int32, all examples end to end), `target` (uint8, 1 where
the token is a label) and `offsets` (int64, where each example starts; one more at the end).

Usage:
    examples = encoded(Project(root).token_cache, tokenizer, model_dir, train_file, "chat_sft_v1")
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from autopilot import fsio
from autopilot.train import lm_data
from autopilot.train.lm_data import IGNORE, Example

log = logging.getLogger(__name__)

KEEP = 32  # cache entries kept (the most recently used)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".onnx")


def _update_with_file(h, path: Path) -> None:
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)


def tokenizer_fingerprint(model_dir: Path) -> str:
    """sha256 over the names and bytes of the model folder's files, weights and their indexes left out."""
    h = hashlib.sha256()
    for path in sorted(Path(model_dir).iterdir()):
        if not path.is_file() or path.suffix in WEIGHT_SUFFIXES or path.name.endswith(".index.json"):
            continue
        h.update(path.name.encode() + b"\0")
        _update_with_file(h, path)
        h.update(b"\0")
    return h.hexdigest()


def cache_key(model_dir: Path, data_file: Path, spec: str) -> str:
    h = hashlib.sha256()
    for package in ("transformers", "tokenizers"):
        h.update(f"{package}={importlib.metadata.version(package)}\0".encode())
    h.update(Path(lm_data.__file__).read_bytes())
    h.update(f"\0{spec}\0{tokenizer_fingerprint(model_dir)}\0".encode())
    _update_with_file(h, Path(data_file))
    return h.hexdigest()[:32]


def encoded(cache_dir: Path, tokenizer, model_dir: Path, data_file: Path, spec: str) -> list[Example]:
    """The examples of `data_file` encoded whole: from the cache, or tokenized now and cached."""
    path = Path(cache_dir) / f"{cache_key(model_dir, data_file, spec)}.npz"
    if path.exists():
        try:
            examples = _read(path)
            os.utime(path)  # most recently used: pruned last
            log.info("tokens of %s from the cache (%s)", data_file, path.name)
            return examples
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            log.warning("token cache %s is unreadable (%s): tokenizing again", path, e)
    examples = lm_data.encode_records(tokenizer, lm_data.read_records(data_file), spec)
    _write(path, examples)
    prune(Path(cache_dir))
    return examples


def _write(path: Path, examples: list[Example]) -> None:
    lengths = np.array([len(e) for e in examples], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = np.fromiter((t for e in examples for t in e.input_ids), dtype=np.int32, count=int(offsets[-1]))
    target = np.fromiter((t != IGNORE for e in examples for t in e.labels), dtype=np.uint8, count=int(offsets[-1]))
    buffer = io.BytesIO()
    np.savez(buffer, ids=ids, target=target, offsets=offsets)
    fsio.atomic_write_bytes(path, buffer.getvalue())


def _read(path: Path) -> list[Example]:
    with np.load(path, allow_pickle=False) as f:
        ids, target, offsets = f["ids"], f["target"].astype(bool), f["offsets"]
    if len(ids) != len(target) or offsets[-1] != len(ids) or (np.diff(offsets) <= 0).any():
        raise ValueError("inconsistent arrays")
    labels = np.where(target, ids, IGNORE)
    ids_list, labels_list = ids.tolist(), labels.tolist()
    return [Example(ids_list[a:b], labels_list[a:b]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def prune(cache_dir: Path, keep: int = KEEP) -> None:
    """Remove all but the `keep` most recently used entries."""
    entries = sorted(cache_dir.glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in entries[keep:]:
        stale.unlink(missing_ok=True)
