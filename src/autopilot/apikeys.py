"""The LLM's API key: the variables that hold it, what a usable key looks like, and processes that never see it.

The study names an environment variable (llm.api_key_env, or AUTOPILOT_LLM_API_KEY_ENV); the key is read
from it when a request is sent and written nowhere. Three mistakes are caught here, each with a message that
never quotes the value: a key pasted where the variable's name belongs (the config, and so study.json and
every schema error, would carry it), a key with a line break or other character that cannot go into an HTTP
header (requests would quote it in its error), and surrounding whitespace (`export KEY=$(cat keyfile)` of a
file with CRLF endings), which is stripped. Trainers, agent CLIs and warm processes run code that needs no key,
so they get an environment without these variables.

Usage:
    refuse_key_in_config(config, "config/config.yaml")    # ConfigError when llm.api_key_env is not a name
    key = read_key("OPENAI_API_KEY")                       # stripped; ConfigError if unusable
    env = without_keys(os.environ, key_variables(study.settings.llm.api_key_env))
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Iterable, Mapping

from autopilot.errors import ConfigError

OVERRIDE_VAR = "AUTOPILOT_LLM_API_KEY_ENV"  # names the key variable instead of llm.api_key_env
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The usual prefixes of API keys (OpenAI, Anthropic, Hugging Face, Groq, xAI, NVIDIA, Perplexity, Replicate,
# GitHub, GitLab, Google): a variable is named like OPENAI_API_KEY, a key like sk-proj-...
KEY_PREFIXES = ("sk-", "sk_", "pk-", "hf_", "gsk_", "xai-", "nvapi-", "pplx-", "r8_", "ghp_", "gho_",
                "github_pat_", "glpat-", "AIza")
HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # printable ASCII without space: what a bearer token may hold
REDACTED = "[redacted]"


def looks_like_key(value: str) -> bool:
    """A value that is a key rather than a variable's name: a key prefix, or a long mix of cases and digits."""
    if value.startswith(KEY_PREFIXES) and len(value) >= 16:
        return True
    mixed = any(c.islower() for c in value) and any(c.isupper() for c in value) and any(c.isdigit() for c in value)
    return (len(value) >= 20 and mixed) or (len(value) >= 40 and "_" not in value)


def check_variable_name(value, where: str) -> None:
    """ConfigError unless `value` names an environment variable; the value itself is never quoted."""
    if not isinstance(value, str):
        return  # the schema reports a wrong type, and a number or a list is no key
    if looks_like_key(value):
        why = "looks like an API key itself"
    elif not NAME.fullmatch(value):
        why = "is not the name of an environment variable (letters, digits and _, not starting with a digit)"
    else:
        return
    raise ConfigError(f"{where} {why}; it must name the variable that holds the key, such as OPENAI_API_KEY "
                      f"(the value is not shown here, in case it is a key). Put the key in the environment "
                      f"(export OPENAI_API_KEY=...) and name that variable.")


def refuse_key_in_config(config, source: str) -> None:
    """Check llm.api_key_env before anything else reads the config: a schema error would quote a pasted key."""
    llm = config.get("llm") if isinstance(config, Mapping) else None
    if isinstance(llm, Mapping):
        check_variable_name(llm.get("api_key_env"), f"{source}: llm.api_key_env")


def read_key(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The key in variable `name`, surrounding whitespace stripped; ConfigError if it is unset, empty or holds a
    character that cannot be sent in an HTTP header."""
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None:
        raise ConfigError(f"llm.api_key_env names ${name}, which is not set in the environment")
    key = raw.strip()
    if not key:
        raise ConfigError(f"${name} is empty: it must hold the API key")
    if not HEADER_SAFE.fullmatch(key):
        raise ConfigError(f"${name} holds a character that cannot be sent in an HTTP header (a line break, a space, "
                          "a control or a non-ASCII character) inside the key; put the key alone in it, e.g. "
                          f"export {name}=\"$(tr -d ' \\r\\n' < keyfile)\" (the key is not shown here)")
    return key


def key_variables(api_key_env: str | None, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The variables that may hold the LLM's key: llm.api_key_env and the one AUTOPILOT_LLM_API_KEY_ENV names."""
    environ = os.environ if environ is None else environ
    named = [api_key_env, environ.get(OVERRIDE_VAR)]
    return tuple(sorted({n for n in named if isinstance(n, str) and NAME.fullmatch(n)}))


def without_keys(environ: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """A copy of `environ` without the key variables."""
    drop = set(names)
    return {k: v for k, v in environ.items() if k not in drop}


def forget_keys(names: Iterable[str]) -> None:
    """Remove the key variables from this process's environment: every process it starts from now on (and
    every process forked from it) lacks them."""
    for name in names:
        os.environ.pop(name, None)


def redact(text: str, names: Iterable[str], environ: Mapping[str, str] | None = None) -> str:
    """`text` with the values of the key variables (as set, and stripped) replaced."""
    environ = os.environ if environ is None else environ
    for name in names:
        raw = environ.get(name) or ""
        for secret in sorted({raw, raw.strip()}, key=len, reverse=True):
            if len(secret) >= 4:  # a one-letter "key" would redact every word
                text = text.replace(secret, REDACTED)
    return text


def redacted_traceback(error: BaseException, names: Iterable[str]) -> str:
    """The traceback of `error` for a log, the key variables' values redacted (a message may quote a header)."""
    return redact("".join(traceback.format_exception(error)), names).rstrip()
