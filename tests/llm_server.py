"""A scripted OpenAI-compatible server on 127.0.0.1 for the LLM tests: real HTTP, answers chosen per test.

Each request to POST /v1/chat/completions is answered by the script: a list of Steps taken in order (the
last one repeats), or a function of the request body. Every request is kept (body and headers) so tests can
check what the client sent.

Usage:
    with ScriptedLLM([reply('{"overrides": {}}')]) as server:
        ...server.url...        # http://127.0.0.1:<port>/v1
        server.requests[0]["body"]["response_format"]
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Step:
    status: int = 200
    body: str = ""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    raw: bytes = b""  # when set, these bytes are the whole response (status line and all), then the server hangs up
    drip: float = 0.0  # seconds between two bytes of `raw`


def completion(content: str, prompt_tokens: int = 321, completion_tokens: int = 45) -> str:
    return json.dumps({
        "id": "chatcmpl-test", "object": "chat.completion", "model": "scripted",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })


def reply(content: str | dict, delay: float = 0.0) -> Step:
    text = content if isinstance(content, str) else json.dumps(content)
    return Step(200, completion(text), {"Content-Type": "application/json"}, delay)


def error(status: int, message: str = "error", headers: dict | None = None) -> Step:
    return Step(status, json.dumps({"error": {"message": message, "code": status}}),
                {"Content-Type": "application/json", **(headers or {})})


def raw(head: str, body: bytes = b"", drip: float = 0.0) -> Step:
    """A response written byte for byte: `head` is the status line and headers, without the blank line."""
    return Step(raw=head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body, drip=drip)


def broken_chunks() -> Step:
    """Transfer-Encoding: chunked with a chunk size that is not a number (requests: ChunkedEncodingError)."""
    return raw("HTTP/1.1 200 OK\nContent-Type: application/json\nTransfer-Encoding: chunked",
               b"5\r\n{\"cho\r\nzz\r\nnot a chunk\r\n")


def bad_gzip() -> Step:
    """Content-Encoding: gzip on a body that is not gzip (requests: ContentDecodingError)."""
    body = b"this is not gzip at all" * 10
    return raw(f"HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Encoding: gzip\n"
               f"Content-Length: {len(body)}", body)


def oversized(size: int) -> Step:
    """A 200 whose body is `size` bytes of one endless JSON string."""
    body = b'{"choices": [{"message": {"content": "' + b"x" * size + b'"}}]}'
    return raw(f"HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: {len(body)}", body)


def dripping(seconds_per_byte: float) -> Step:
    """A good answer sent one byte at a time: each read is quick, the whole never ends in time."""
    body = completion(json.dumps(GOOD_ANSWER)).encode()
    return raw(f"HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: {len(body)}", body,
               drip=seconds_per_byte)


def redirect(status: int, location: str) -> Step:
    return Step(status, "", {"Location": location})


def llama_cpp_like(answer: Callable[[dict], Step], status: int = 422) -> Callable[[dict], Step]:
    """A script that rejects the OpenAI json_schema form the way llama.cpp's servers do: an error naming the
    field (llama-cpp-python 0.3 answers 500 with pydantic's message)."""
    def handle(body: dict) -> Step:
        if (body.get("response_format") or {}).get("type") == "json_schema":
            return error(status, "1 validation error: {'type': 'literal_error', 'loc': ('body', 'response_format', "
                                 "'type'), 'msg': \"Input should be 'text' or 'json_object'\"}")
        return answer(body)
    return handle


def prompt_of(body: dict) -> str:
    return body["messages"][-1]["content"]


class ScriptedLLM:
    def __init__(self, script: list[Step] | Callable[[dict], Step]):
        self.script = script
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> ScriptedLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def next_step(self, body: dict) -> Step:
        with self.lock:
            n = len(self.requests) - 1
        if callable(self.script):
            return self.script(body)
        return self.script[min(n, len(self.script) - 1)]

    def handler_class(self):
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # http.server calls it by this name
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw)
                with scripted.lock:
                    scripted.requests.append({"path": self.path, "body": body, "headers": dict(self.headers),
                                              "at": time.monotonic()})
                if self.path != "/v1/chat/completions":
                    return self.send(Step(404, "not found"))
                step = scripted.next_step(body)
                time.sleep(step.delay)
                self.send(step)

            def send(self, step: Step) -> None:
                if step.raw:
                    return self.send_raw(step)
                data = step.body.encode()
                try:
                    self.send_response(step.status)
                    for k, v in step.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    pass

            def send_raw(self, step: Step) -> None:
                self.close_connection = True
                chunks = [step.raw[i:i + 1] for i in range(len(step.raw))] if step.drip else [step.raw]
                try:
                    for chunk in chunks:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        time.sleep(step.drip)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up
                    pass

            def log_message(self, *args) -> None:
                pass

        return Handler


GOOD_ANSWER = {
    "overrides": {"lr": 0.005, "optimizer": "sgd"},
    "rationale": "The runs so far favour a larger step size; sgd with lr 0.005 has not been tried yet and may "
                 "generalize better than adam on this small network.",
    "hypothesis": "val_accuracy rises above the best run's mean by at least one point.",
    "housekeeping": {"new_todos": ["try width 16 together with sgd"],
                     "notes": "adam at lr 0.003 plateaus near the baseline; sgd is untested so far.",
                     "resolved_todos": []},
}


def llm_study(root, url: str, runs: int = 3, llm: dict | None = None, **config):
    """A study of policy llm pointed at `url`, with `runs` synthetic finished runs (so a best run exists)."""
    from pathlib import Path

    from helpers import FAST_STUDY

    from autopilot.journal.synthetic import write_runs
    from autopilot.paths import Project
    from autopilot.study import Study, check_config

    cfg = {"study": "s", "task": "cnn_digits", "metric": {"name": "val_accuracy", "goal": "maximize"},
           "baseline": FAST_STUDY["baseline"], "search_space": FAST_STUDY["search_space"], "policy": "llm",
           "tpe": {"n_startup_trials": 2},
           "llm": {"base_url": url, "retries": 2, "backoff_seconds": 0.01, "timeout_seconds": 2, **(llm or {})},
           **config}
    study = Study(Project(Path(root)), check_config(cfg, "test"))
    if runs:
        write_runs(study, runs, seed=1)
    return study
