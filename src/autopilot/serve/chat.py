"""OpenAI-compatible chat completions on the champion: what a request may ask, generation, and the answer.

The request is the subset of OpenAI's /v1/chat/completions a fine-tuned model can honour: `messages` (system,
user, assistant turns with text content), `max_tokens` (or `max_completion_tokens`; capped at serve.max_tokens),
`temperature` (0 - greedy, the default here: a fine-tuned model's own answer), `top_p`, `stop`, `seed`, `stream`,
and `n` = 1. The prompt is the tokenizer's chat template with the assistant's turn opened, as in training.
The answer is OpenAI's `chat.completion` object, or with stream=true the `chat.completion.chunk` events of a
server-sent event stream ending with `data: [DONE]`. `system_fingerprint` names the champion run that answered.

Usage:
    request = parse(body, served_name, max_tokens=256)      # ChatRequest, or BadRequest
    text, finish, usage = generate(champion, request)
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from autopilot.serve.model import Loaded
from autopilot.train import lm_data

ROLES = ("system", "user", "assistant")


class BadRequest(ValueError):
    """The request cannot be served as asked: the message names the field (OpenAI's `param`)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str = "invalid_request"):
        super().__init__(message)
        self.param, self.status, self.code = param, status, code


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict]
    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    seed: int | None
    stream: bool


def parse(body: object, served: str, max_tokens: int) -> ChatRequest:
    """Check a chat request; BadRequest names the first field that is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if model not in (None, "", served):
        raise BadRequest(f"the model `{model}` does not exist: this server serves `{served}` (GET /v1/models)",
                         "model", 404, "model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("`messages` must be a non-empty list of {role, content} objects", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise BadRequest(f"messages[{i}] must be {{role: system|user|assistant, content: text}}", "messages")
    if body.get("n", 1) != 1:
        raise BadRequest("only n=1 is served", "n")
    asked = body.get("max_completion_tokens", body.get("max_tokens"))
    if asked is not None and (not isinstance(asked, int) or isinstance(asked, bool) or asked < 1):
        raise BadRequest("`max_tokens` must be a positive integer", "max_tokens")
    temperature, top_p = body.get("temperature", 0.0), body.get("top_p", 1.0)
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 <= temperature <= 2:
        raise BadRequest("`temperature` must be a number from 0 to 2", "temperature")
    if not isinstance(top_p, (int, float)) or isinstance(top_p, bool) or not 0 < top_p <= 1:
        raise BadRequest("`top_p` must be a number in (0, 1]", "top_p")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 4:
        raise BadRequest("`stop` must be a string or a list of up to 4 strings", "stop")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise BadRequest("`seed` must be an integer", "seed")
    return ChatRequest([{"role": m["role"], "content": m["content"]} for m in messages],
                       min(asked or max_tokens, max_tokens), float(temperature), float(top_p), stop, seed,
                       bool(body.get("stream", False)))


def prompt_ids(champion: Loaded, request: ChatRequest):
    tokenizer = champion.tokenizer
    lm_data.ensure_chat_template(tokenizer)
    text = lm_data.render(tokenizer, request.messages, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].to(champion.device)


def stop_ids(champion: Loaded) -> list[int]:
    """End of text, and the chat template's end of turn (<|im_end|>...)."""
    tokenizer = champion.tokenizer
    ids = [tokenizer.eos_token_id]
    end = lm_data.turn_end(tokenizer)
    if end is not None:
        ids.append(tokenizer.convert_tokens_to_ids(end))
    return ids


def progress_criteria(flag: threading.Event):
    """A StoppingCriteria that notes the length and last token after each step, and stops when `flag` is set."""
    import torch
    from transformers import StoppingCriteria

    class Progress(StoppingCriteria):
        length, last = 0, None

        def __call__(self, input_ids, scores, **kwargs):
            self.length, self.last = input_ids.shape[1], int(input_ids[0, -1])
            return torch.full((input_ids.shape[0],), flag.is_set(), dtype=torch.bool, device=input_ids.device)

    return Progress()


def run_generation(champion: Loaded, request: ChatRequest, streamer=None, flag: threading.Event | None = None):
    """Generate under the champion's lock; returns (new token ids, whether generation stopped by itself)."""
    import torch
    from transformers import GenerationConfig, StoppingCriteriaList

    tokenizer = champion.tokenizer
    progress = progress_criteria(flag or threading.Event())
    with champion.lock, torch.no_grad():
        ids = prompt_ids(champion, request)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        sample = request.temperature > 0
        config = GenerationConfig(max_new_tokens=request.max_tokens, do_sample=sample, eos_token_id=stop_ids(champion),
                                  pad_token_id=pad, stop_strings=request.stop or None,
                                  **({"temperature": request.temperature, "top_p": request.top_p} if sample else {}))
        if request.seed is not None:
            torch.manual_seed(request.seed)
        out = champion.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config,
                                      tokenizer=tokenizer, streamer=streamer,
                                      stopping_criteria=StoppingCriteriaList([progress]))
        new = out[0, ids.shape[1]:]
        ended = len(new) < request.max_tokens or (len(new) and int(new[-1]) in stop_ids(champion))
        return ids.shape[1], new, bool(ended)


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """The text up to the first stop string (True), or all of it (False)."""
    cuts = [text.index(s) for s in stop if s in text]
    return (text[:min(cuts)], True) if cuts else (text, False)


def generate(champion: Loaded, request: ChatRequest) -> tuple[str, str, dict]:
    """(text, finish_reason, usage) of one completion, greedy unless a temperature is given."""
    n_prompt, new, ended = run_generation(champion, request)
    with champion.lock:  # a fast tokenizer is not safe to share between threads at once
        text, stopped = cut_at_stop(champion.tokenizer.decode(new, skip_special_tokens=True), request.stop)
    usage = {"prompt_tokens": int(n_prompt), "completion_tokens": int(len(new)),
             "total_tokens": int(n_prompt + len(new))}
    return text, "stop" if ended or stopped else "length", usage


def completion(champion: Loaded, served: str, text: str, finish: str, usage: dict) -> dict:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": served, "system_fingerprint": fingerprint(champion),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                         "logprobs": None}],
            "usage": usage}


def fingerprint(champion: Loaded) -> str:
    return f"autopilot-run-{champion.run_id}"


def stream(champion: Loaded, served: str, request: ChatRequest) -> Iterator[str]:
    """Server-sent events of one completion: a role chunk, content chunks as tokens come, the finish, [DONE].

    Generation runs in a thread of its own, under the champion's lock; this iterator (run in the server's thread
    pool) only relays its text, so a client that goes away holds no lock: the flag it leaves set stops generation.
    """
    from transformers import TextIteratorStreamer

    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict, finish: str | None = None) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": served,
                "system_fingerprint": fingerprint(champion),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        return f"data: {json.dumps(body)}\n\n"

    flag = threading.Event()
    streamer = TextIteratorStreamer(champion.tokenizer, skip_prompt=True, skip_special_tokens=True)
    result: dict = {}

    def work() -> None:
        try:
            result["ended"] = run_generation(champion, request, streamer, flag)[2]
        except Exception as e:  # reported in the stream; the end of the streamer unblocks the relay
            result["error"] = f"{type(e).__name__}: {e}"
            streamer.end()

    worker = threading.Thread(target=work, name="chat-stream", daemon=True)
    worker.start()
    sent, stopped = "", False
    try:
        yield chunk({"role": "assistant", "content": ""})
        for piece in streamer:
            text, stopped = cut_at_stop(sent + piece, request.stop)
            if text[len(sent):]:
                yield chunk({"content": text[len(sent):]})
            sent = text
            if stopped:
                break
    finally:
        flag.set()  # stop at a stop string, or when the client went away
    worker.join()
    if "error" in result:
        yield f"data: {json.dumps({'error': {'message': result['error'], 'type': 'server_error'}})}\n\n"
    else:
        yield chunk({}, "stop" if stopped or result.get("ended") else "length")
    yield "data: [DONE]\n\n"
