"""Talking to an LLM: settings, the two backends, and one audited exchange (ask, save, parse).

Backends: `openai` (POST {base_url}/chat/completions, `autopilot.propose.llm.client`) and `command` (an agent CLI that
reads the prompt on stdin, `autopilot.propose.llm.command`). Whatever a backend does wrong raises `LLMFailure`, whose
`kind` (connection, timeout, http_429, invalid_json, ...) the journal counts; the proposing code falls back on
it. The answer is data: it is parsed as JSON and checked against a schema, never run.

Usage:
    settings = settings_for(study)
    answer = exchange(settings, "worker", prompt_text, send_schema, check_schema, audit)
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from autopilot import apikeys
from autopilot.errors import ConfigError, LLMError
from autopilot.propose.llm.audit import Audit
from autopilot.study import Study

# The most an answer may hold (bytes, decompressed): a completion of max_tokens tokens is a small fraction of it;
# a server or an agent that sends more is cut off, not read into memory.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
ENV_OVERRIDES = {"base_url": "AUTOPILOT_LLM_BASE_URL", "model": "AUTOPILOT_LLM_MODEL",
                 "api_key_env": "AUTOPILOT_LLM_API_KEY_ENV"}


class LLMFailure(LLMError):
    """An LLM exchange failed; `kind` names how (the journal counts fallbacks by it), `meta` is what was seen."""

    def __init__(self, message: str, kind: str, meta: dict | None = None, response: str = ""):
        super().__init__(message)
        self.kind = kind
        self.meta = meta
        self.response = response


@dataclass(frozen=True)
class Endpoint:
    """Where and how to ask: the study's `llm` block with the AUTOPILOT_LLM_* environment overrides applied."""

    backend: str
    base_url: str
    model: str
    api_key_env: str | None
    command: list[str] | None
    temperature: float
    max_tokens: int
    timeout: float
    retries: int
    backoff: float
    key_variables: tuple[str, ...] = ()  # every variable that may hold the key: kept from agent CLIs

    def api_key(self) -> str | None:
        """The key from the environment variable the config names, whitespace stripped; never stored anywhere."""
        if not self.api_key_env:
            return None
        try:
            return apikeys.read_key(self.api_key_env)
        except ConfigError as e:
            raise LLMFailure(str(e), "config") from None


def settings_for(study: Study, role: str = "worker") -> Endpoint:
    """Where and how a role asks: the study's `llm` (with the AUTOPILOT_LLM_* overrides); for the mentor, each key
    its own `mentor.llm` sets wins over that. LLMFailure (kind config) when a key variable's name is not one."""
    cfg = study.settings.llm
    chosen = {name: os.environ.get(var) or getattr(cfg, name) for name, var in ENV_OVERRIDES.items()}
    var = ENV_OVERRIDES["api_key_env"]
    try:
        apikeys.check_variable_name(chosen["api_key_env"], f"${var}" if os.environ.get(var) else "llm.api_key_env")
    except ConfigError as e:
        raise LLMFailure(str(e), "config") from None
    endpoint = Endpoint(backend=cfg.backend, base_url=chosen["base_url"].rstrip("/"), model=chosen["model"],
                        api_key_env=chosen["api_key_env"], command=None if cfg.command is None else list(cfg.command),
                        temperature=cfg.temperature, max_tokens=cfg.max_tokens, timeout=cfg.timeout_seconds,
                        retries=cfg.retries, backoff=cfg.backoff_seconds,
                        key_variables=apikeys.key_variables(cfg.api_key_env))
    own = study.settings.mentor.llm if role == "mentor" else None
    if own is None:
        return endpoint
    given = {k: v for k, v in dataclasses.asdict(own).items() if v is not None}
    renamed = {"timeout": given.pop("timeout_seconds")} if "timeout_seconds" in given else {}
    if "command" in given:
        given["command"] = list(given["command"])
    if "base_url" in given:
        given["base_url"] = given["base_url"].rstrip("/")
    keys = tuple(dict.fromkeys((*endpoint.key_variables, *apikeys.key_variables(own.api_key_env))))
    return dataclasses.replace(endpoint, **given, **renamed, key_variables=keys)


@dataclass
class Reply:
    text: str
    meta: dict = field(default_factory=dict)


def redact(text: str, secret: str | None) -> str:
    """`text` with every occurrence of the secret replaced: a server may echo the key in an error body."""
    return text.replace(secret, "[redacted]") if secret else text


def ask(settings: Endpoint, prompt: str, schema: dict, audit: Audit) -> Reply:
    """The raw reply of the configured backend."""
    from autopilot.propose.llm import client, command

    if settings.backend == "command":
        return command.run(settings, prompt)
    return client.chat(settings, prompt, schema, audit)


def exchange(settings: Endpoint, role: str, prompt: str, send_schema: dict, check_schema: dict,
             audit: Audit) -> dict:
    """Ask, save prompt, response and meta under the role's name, and return the answer checked against
    `check_schema`; LLMFailure (saved too) when any step fails."""
    from autopilot.propose.llm import extract

    try:
        reply = ask(settings, prompt, send_schema, audit)
    except LLMFailure as e:
        audit.record(role, prompt, e.response, {**(e.meta or {}), "status": "failed", "failure": e.kind,
                                                 "error": str(e)})
        raise
    try:
        answer = extract.answer(reply.text, check_schema)
    except LLMFailure as e:
        audit.record(role, prompt, reply.text, {**reply.meta, "status": "failed", "failure": e.kind,
                                                "error": str(e)})
        raise
    audit.record(role, prompt, reply.text, {**reply.meta, "status": "ok"})
    return answer
