"""Structured output: which `response_format` an OpenAI-compatible endpoint takes, found once and remembered.

Servers differ. OpenAI and vLLM take `{"type": "json_schema", "json_schema": {...}}`; llama.cpp's server
rejects that form with an error that names it (a 4xx; llama-cpp-python's is a 500) and takes
`{"type": "json_object", "schema": {...}}`, which it turns into a grammar; some take neither. The client tries
them in this order, moves on only when an error names the response format, and the form that worked is kept
per endpoint in runs/<study>/llm_endpoints.json, so later runs start with it. Without any form the prompt
alone asks for JSON, and the reply is parsed all the same.
"""

from __future__ import annotations

import logging
import re

from autopilot import fsio, ledger
from autopilot.clock import now_iso
from autopilot.errors import AutopilotError
from autopilot.propose.llm.audit import Audit

log = logging.getLogger(__name__)

FORMATS = ("json_schema", "json_object", "none")
FORMAT_ERROR = re.compile(r"response_format|json_schema|json_object|schema|grammar", re.IGNORECASE)


def response_format(form: str, schema: dict) -> dict | None:
    if form == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    if form == "json_object":
        return {"type": "json_object", "schema": schema}
    return None


def rejects_format(status: int, body: str) -> bool:
    """A 4xx that names the response format: the server does not take this form (401, 404... are other faults).
    llama-cpp-python's server reports that validation error as a 500, so a 5xx that names the field counts too."""
    if status in (400, 422):
        return bool(FORMAT_ERROR.search(body))
    return status >= 500 and "response_format" in body


def order(audit: Audit, endpoint: str) -> list[str]:
    """The forms to try, the one remembered for this endpoint first."""
    known = remembered(audit).get(endpoint, {}).get("response_format")
    if known not in FORMATS:
        return list(FORMATS)
    return list(FORMATS[FORMATS.index(known):])


def remembered(audit: Audit) -> dict:
    if audit.cache_file is None or not audit.cache_file.exists():
        return {}
    try:
        cache = ledger.read_path(audit.cache_file)
    except AutopilotError as e:  # a damaged cache only costs one negotiation
        log.warning("%s: ignored (%s)", audit.cache_file, e)
        return {}
    return cache if isinstance(cache, dict) else {}


def remember(audit: Audit, endpoint: str, form: str) -> None:
    """Keep the form that worked for the endpoint (a dry run keeps nothing)."""
    cache = remembered(audit)
    if audit.cache_file is None or cache.get(endpoint, {}).get("response_format") == form:
        return
    cache[endpoint] = {"response_format": form, "updated_at": now_iso()}
    fsio.atomic_write_json(audit.cache_file, cache)
    log.info("%s takes response_format %s; remembered in %s", endpoint, form, audit.cache_file)
