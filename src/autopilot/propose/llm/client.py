"""The `openai` backend: POST {base_url}/chat/completions with `requests`, for any OpenAI-compatible server.

A connection error, a 429 or a 5xx is retried up to llm.retries times, waiting backoff_seconds * 2^k, or the
server's Retry-After when it gives one (a Retry-After longer than timeout_seconds is not waited for). A
request that times out is not retried: a server that slow would only hold the loop up longer. Any other
4xx fails at once. An error that names the response format (a 4xx, or llama-cpp-python's 500) makes the
client try the next form instead (`autopilot.propose.llm.negotiate`). The API key goes into the Authorization header
and nowhere else: error bodies are redacted before anything is kept.

Usage:
    reply = chat(settings, prompt, schema, audit)    # Reply(text, meta) or LLMFailure
"""

from __future__ import annotations

import email.utils
import logging
import re
import time

import requests

from autopilot.propose.llm import Endpoint, LLMFailure, Reply, negotiate, redact
from autopilot.propose.llm.audit import Audit

log = logging.getLogger(__name__)

BODY_CHARS = 1000  # of an error body kept in messages


class FormatRejected(Exception):
    """The server does not take this response_format; the next form is tried."""


def chat(settings: Endpoint, prompt: str, schema: dict, audit: Audit) -> Reply:
    key = settings.api_key()
    meta = {"backend": "openai", "model": settings.model, "base_url": settings.base_url, "response_format": None,
            "latency_seconds": None, "prompt_tokens": None, "completion_tokens": None, "attempts": 0, "errors": []}
    started = time.monotonic()
    try:
        for form in negotiate.order(audit, settings.base_url):
            meta["response_format"] = form
            try:
                resp = post(settings, request_body(settings, prompt, schema, form), key, meta)
            except FormatRejected as e:
                meta["errors"].append(f"response_format {form} rejected: {e}")
                log.info("%s rejects response_format %s; trying the next form", settings.base_url, form)
                continue
            negotiate.remember(audit, settings.base_url, form)
            return reply_from(resp, meta, key)
    finally:
        meta["latency_seconds"] = round(time.monotonic() - started, 3)
    raise AssertionError("unreachable: the last form (none) is never rejected as a format")


def request_body(settings: Endpoint, prompt: str, schema: dict, form: str) -> dict:
    body = {"model": settings.model, "messages": [{"role": "user", "content": prompt}],
            "temperature": settings.temperature, "max_tokens": settings.max_tokens}
    fmt = negotiate.response_format(form, schema)
    if fmt is not None:
        body["response_format"] = fmt
    return body


def post(settings: Endpoint, body: dict, key: str | None, meta: dict) -> requests.Response:
    """The server's 2xx response, after retries; FormatRejected or LLMFailure otherwise."""
    url = f"{settings.base_url}/chat/completions"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    for attempt in range(settings.retries + 1):
        meta["attempts"] += 1
        try:
            resp = requests.post(url, json=body, headers=headers, timeout=settings.timeout)
        except requests.exceptions.ReadTimeout:
            raise LLMFailure(f"{url}: no answer within llm.timeout_seconds={settings.timeout:g}", "timeout",
                             meta) from None
        except requests.ConnectionError as e:
            failure = LLMFailure(f"{url}: cannot connect ({connection_reason(e)})", "connection", meta)
            wait = settings.backoff * 2 ** attempt
        else:
            if resp.ok:
                return resp
            failure, retry, after = http_failure(settings, url, body, resp, key, meta)
            if not retry:
                raise failure
            wait = settings.backoff * 2 ** attempt if after is None else after
        meta["errors"].append(str(failure))
        if attempt < settings.retries:
            log.warning("%s; retrying in %.2f s (%d of %d)", failure, wait, attempt + 1, settings.retries)
            time.sleep(wait)
    raise LLMFailure(f"gave up after {meta['attempts']} attempt(s): {failure}", failure.kind, meta)


def http_failure(settings: Endpoint, url: str, body: dict, resp: requests.Response, key: str | None,
                 meta: dict) -> tuple[LLMFailure, bool, float | None]:
    """The failure of a non-2xx response, whether to retry it, and the server's Retry-After if any;
    FormatRejected when a 4xx names the response format."""
    text = redact(resp.text[:BODY_CHARS], key)
    code = resp.status_code
    if "response_format" in body and negotiate.rejects_format(code, text):
        raise FormatRejected(f"HTTP {code}: {text[:300]}")
    failure = LLMFailure(f"{url}: HTTP {code}: {text[:300]}", f"http_{code}", meta, response=text)
    if code != 429 and code < 500:
        return failure, False, None
    after = retry_after(resp)
    if after is not None and after > settings.timeout:
        return LLMFailure(f"{url}: HTTP {code} asks to retry after {after:g} s, longer than "
                          f"llm.timeout_seconds={settings.timeout:g}", f"http_{code}", meta, response=text), False, None
    return failure, True, after


def retry_after(resp: requests.Response) -> float | None:
    """Seconds the server asks to wait (Retry-After as seconds or as an HTTP date), or None."""
    value = resp.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def connection_reason(e: requests.ConnectionError) -> str:
    found = re.search(r"\[Errno -?\d+\][^'\")]*", str(e))
    return found.group(0).strip() if found else str(e)[:200]


def reply_from(resp: requests.Response, meta: dict, key: str | None) -> Reply:
    try:
        data = resp.json()
        choice = data["choices"][0]
        text = choice["message"]["content"]
        if not isinstance(text, str):
            raise TypeError("content is not text")
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise LLMFailure(f"{meta['base_url']}: the answer is not a chat completion ({e})", "bad_response", meta,
                         response=redact(resp.text[:BODY_CHARS * 4], key)) from None
    usage = data.get("usage") or {}
    meta.update(prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"),
                finish_reason=choice.get("finish_reason"), served_model=data.get("model"))
    return Reply(redact(text, key), meta)
