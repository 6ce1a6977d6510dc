"""The `openai` backend: POST {base_url}/chat/completions with `requests`, for any OpenAI-compatible server.

One exchange takes at most llm.timeout_seconds in all: connecting, sending, reading the answer to its end,
retries and the waits between them. (A socket timeout bounds each read, not their sum: a server that drips
its answer a byte at a time would hold the loop for ever. So each request runs in a thread of its own, and
the exchange stops waiting for it at the deadline.) A connection error, a 429 or a 5xx is retried up to
llm.retries times while time remains, waiting backoff_seconds * 2^k, or the server's Retry-After when it gives
one (a Retry-After longer than the time left is not waited for). A request that ran out of time is not
retried. Any other 4xx fails at once, and so does a redirect, which is not followed (the key would go along
to wherever it points). An error that names the response format (a 4xx, or llama-cpp-python's 500) makes the
client try the next form instead (`autopilot.propose.llm.negotiate`). An answer larger than MAX_ANSWER_BYTES
(decompressed) is not read further.

Whatever `requests`, urllib3 or a codec raises is an LLMFailure that records the exception's type and the URL,
nothing more: some of their messages quote the request's headers, and so the key. The API key goes into the
Authorization header and nowhere else: whatever the server sends back is redacted before anything is kept.

Usage:
    reply = chat(settings, prompt, schema, audit)    # Reply(text, meta) or LLMFailure
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import requests

from autopilot.propose.llm import MAX_ANSWER_BYTES, Endpoint, LLMFailure, Reply, negotiate, redact
from autopilot.propose.llm.audit import Audit

log = logging.getLogger(__name__)

BODY_CHARS = 1000  # of an error body kept in messages
READ_CHUNK_BYTES = 64 * 1024
TEXT_CHARS = 200  # of a string the server names itself with (model, finish_reason)


class FormatRejected(Exception):
    """The server does not take this response_format; the next form is tried."""


class OutOfTime(Exception):
    """The exchange's deadline passed before the answer was read."""


class TooLarge(Exception):
    """The answer is larger than MAX_ANSWER_BYTES."""


@dataclass(frozen=True)
class Response:
    """What one request brought back, read to its end."""

    status_code: int
    headers: Mapping[str, str]
    body: bytes

    def text(self, chars: int) -> str:
        return self.body[:chars * 4].decode("utf-8", errors="replace")[:chars]


def chat(settings: Endpoint, prompt: str, schema: dict, audit: Audit) -> Reply:
    key = settings.api_key()
    meta = {"backend": "openai", "model": settings.model, "base_url": settings.base_url, "response_format": None,
            "latency_seconds": None, "prompt_tokens": None, "completion_tokens": None, "attempts": 0, "errors": []}
    started = time.monotonic()
    deadline = started + settings.timeout
    try:
        for form in negotiate.order(audit, settings.base_url):
            meta["response_format"] = form
            try:
                resp = post(settings, request_body(settings, prompt, schema, form), key, meta, deadline)
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


def post(settings: Endpoint, body: dict, key: str | None, meta: dict, deadline: float) -> Response:
    """The server's 2xx response, after retries; FormatRejected or LLMFailure otherwise."""
    url = f"{settings.base_url}/chat/completions"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    for attempt in range(settings.retries + 1):
        meta["attempts"] += 1
        try:
            resp = fetch(url, body, headers, deadline)
        except (OutOfTime, requests.Timeout):
            raise out_of_time(settings, url, meta) from None
        except TooLarge:
            raise LLMFailure(f"{url}: the answer is larger than {MAX_ANSWER_BYTES} bytes; it was not read further",
                             "response_too_large", meta) from None
        except requests.ConnectionError as e:
            if time.monotonic() >= deadline:  # a read that timed out while the body streamed in
                raise out_of_time(settings, url, meta) from None
            failure = LLMFailure(f"{url}: cannot connect ({connection_reason(e)})", "connection", meta)
            wait = settings.backoff * 2 ** attempt
        except Exception as e:  # any other error of requests, urllib3, http.client or a codec: its type only
            raise request_failure(url, e, meta) from None
        else:
            if 200 <= resp.status_code < 300:
                return resp
            failure, retry, after = http_failure(settings, url, body, resp, key, meta, deadline)
            if not retry:
                raise failure
            wait = settings.backoff * 2 ** attempt if after is None else after
        meta["errors"].append(str(failure))
        if attempt < settings.retries:
            if time.monotonic() + wait >= deadline:
                raise LLMFailure(f"{failure}; no time left to retry within llm.timeout_seconds={settings.timeout:g}",
                                 failure.kind, meta)
            log.warning("%s; retrying in %.2f s (%d of %d)", failure, wait, attempt + 1, settings.retries)
            time.sleep(wait)
    raise LLMFailure(f"gave up after {meta['attempts']} attempt(s): {failure}", failure.kind, meta)


def fetch(url: str, body: dict, headers: dict, deadline: float) -> Response:
    """One request read to its end in a thread of its own, which is left behind at `deadline` (OutOfTime): it
    ends by itself when its socket times out, and as a daemon it never holds up the exit of the process."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(read_response(url, body, headers, deadline))
        except BaseException as e:  # handed over to the caller's thread
            outcome.append(e)

    thread = threading.Thread(target=run, name="llm-request", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if thread.is_alive() or not outcome:
        raise OutOfTime()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def read_response(url: str, body: dict, headers: dict, deadline: float) -> Response:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise OutOfTime()
    with requests.post(url, json=body, headers=headers, timeout=remaining, stream=True,
                       allow_redirects=False) as resp:
        data = bytearray()
        for chunk in resp.iter_content(READ_CHUNK_BYTES):
            data += chunk
            if len(data) > MAX_ANSWER_BYTES:
                raise TooLarge()
            if time.monotonic() >= deadline:
                raise OutOfTime()
        return Response(resp.status_code, resp.headers, bytes(data))


def out_of_time(settings: Endpoint, url: str, meta: dict) -> LLMFailure:
    return LLMFailure(f"{url}: no complete answer within llm.timeout_seconds={settings.timeout:g}", "timeout", meta)


def request_failure(url: str, error: Exception, meta: dict) -> LLMFailure:
    """The failure of a request that raised: by the exception's type and the URL (its message may quote the key)."""
    name = type(error).__name__
    kind = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()  # InvalidURL -> invalid_url
    return LLMFailure(f"{url}: the request failed with {name} (its message is not kept: it may quote the request's "
                      "headers)", kind, meta)


def http_failure(settings: Endpoint, url: str, body: dict, resp: Response, key: str | None, meta: dict,
                 deadline: float) -> tuple[LLMFailure, bool, float | None]:
    """The failure of a non-2xx response, whether to retry it, and the server's Retry-After if any;
    FormatRejected when a 4xx names the response format."""
    text = redact(resp.text(BODY_CHARS), key)
    code = resp.status_code
    if "response_format" in body and negotiate.rejects_format(code, text):
        raise FormatRejected(f"HTTP {code}: {text[:300]}")
    if 300 <= code < 400:
        where = redact(str(resp.headers.get("Location", "elsewhere")), key)[:TEXT_CHARS]
        return LLMFailure(f"{url}: HTTP {code} redirects to {where}; redirects are not followed (the key would go "
                          "along): set llm.base_url to the endpoint itself", f"http_{code}", meta), False, None
    failure = LLMFailure(f"{url}: HTTP {code}: {text[:300]}", f"http_{code}", meta, response=text)
    if code != 429 and code < 500:
        return failure, False, None
    after = retry_after(resp)
    left = deadline - time.monotonic()
    if after is not None and after > left:
        return LLMFailure(f"{url}: HTTP {code} asks to retry after {after:g} s, longer than the {max(left, 0):.1f} s "
                          f"left of llm.timeout_seconds={settings.timeout:g}", f"http_{code}", meta,
                          response=text), False, None
    return failure, True, after


def retry_after(resp: Response) -> float | None:
    """Seconds the server asks to wait (Retry-After as seconds or as an HTTP date), or None."""
    value = str(resp.headers.get("Retry-After", "")).strip()
    if not value:
        return None
    if re.fullmatch(r"\d{1,9}(\.\d{1,6})?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when.timestamp() - time.time())


def connection_reason(e: requests.ConnectionError) -> str:
    """The system's reason ([Errno 111] Connection refused), or the error's type: its message may name a proxy."""
    found = re.search(r"\[Errno -?\d+\][^'\")]*", str(e))
    return found.group(0).strip() if found else type(e).__name__


def reply_from(resp: Response, meta: dict, key: str | None) -> Reply:
    try:
        data = json.loads(resp.body, parse_constant=refuse_constant)
        choice = data["choices"][0]
        text = choice["message"]["content"]
        if not isinstance(text, str):
            raise TypeError("content is not text")
    except (ValueError, KeyError, IndexError, TypeError, RecursionError) as e:
        reason = type(e).__name__ if isinstance(e, RecursionError) else str(e)[:200]
        raise LLMFailure(f"{meta['base_url']}: the answer is not a chat completion ({reason})", "bad_response", meta,
                         response=redact(resp.text(BODY_CHARS * 4), key)) from None
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    meta.update(prompt_tokens=count(usage.get("prompt_tokens")),
                completion_tokens=count(usage.get("completion_tokens")),
                finish_reason=label(choice.get("finish_reason"), key), served_model=label(data.get("model"), key))
    return Reply(unicode_text(redact(text, key)), meta)


def refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def count(value) -> int | None:
    """A token count as the server gave it, if it is one."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53 else None


def label(value, key: str | None) -> str | None:
    return unicode_text(redact(value, key))[:TEXT_CHARS] if isinstance(value, str) else None


def unicode_text(text: str) -> str:
    """The text with lone surrogates (a JSON escape such as \\ud800) replaced: it must be writable as UTF-8."""
    return text.encode("utf-8", errors="replace").decode("utf-8")
