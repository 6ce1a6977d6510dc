"""The server: Starlette routes behind a Bearer key, run by uvicorn (`autopilot serve`).

    GET  /health               no key: 200 {"status": "ok", "run_id"} while a champion is loaded, else 503
    GET  /models/info          the champion: champion.json, when it was loaded, reloads, the last reload error
    GET  /v1/models            OpenAI's model list: one model, named after the study
    POST /v1/chat/completions  OpenAI-compatible chat (causal_lm champions), non-streaming or streaming (SSE)
    POST /v1/predict           {"images": [...]} -> labels and probabilities (the digits CNN)

Every route but /health needs `Authorization: Bearer KEY`, KEY being the value of the environment variable the
study names in serve.api_key_env; it is compared in constant time (hmac.compare_digest). Without a key the
server starts on a loopback address only (127.0.0.0/8, ::1, localhost), and then asks for none.

Usage:
    app = build_app(study, api_key="...")            # a Starlette app (tests run it under uvicorn themselves)
    serve(study, host="127.0.0.1", port=8000)        # what `autopilot serve` does
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import os

from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from autopilot.errors import ConfigError
from autopilot.serve import chat
from autopilot.serve.model import ChampionHolder, Loaded
from autopilot.study import Study

log = logging.getLogger(__name__)

OPEN_PATHS = ("/health",)
DIGIT_PIXELS = 64  # an 8x8 image, values 0-16 as in scikit-learn's digits


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def api_key(study: Study) -> str | None:
    """The key from the environment variable serve.api_key_env names; None when it is unset or empty."""
    return os.environ.get(study.settings.serve.api_key_env) or None


def check_bind(study: Study, host: str, key: str | None) -> None:
    """Refuse to listen beyond this machine without a key."""
    if key is None and not is_loopback(host):
        raise ConfigError(f"refusing to serve on {host} without an API key: set the environment variable "
                          f"{study.settings.serve.api_key_env} (serve.api_key_env) to a secret, or listen on "
                          "127.0.0.1 and reach it with ssh -L")


def error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
          param: str | None = None) -> JSONResponse:
    """An error in OpenAI's shape, which OpenAI clients show as it is."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status)


def build_app(study: Study, key: str | None, holder: ChampionHolder | None = None) -> Starlette:
    """The app serving `study`'s champion; `holder` (default: a new one that watches `current`) holds the model."""
    if holder is None:
        holder = ChampionHolder(study)
        holder.start_watching(study.settings.serve.reload_seconds)
    served = study.name
    secret = key.encode("utf-8") if key else None

    def champion_of(kind: str) -> Loaded | JSONResponse:
        champion = holder.get()
        if champion is None:
            return error(503, f"study {served} has no champion yet (models/{served}/current)", "server_error",
                         "no_champion")
        if champion.kind != kind:
            route = {"chat": "/v1/chat/completions", "classifier": "/v1/predict"}.get(champion.kind)
            return error(404, f"the champion (run {champion.run_id}, task {champion.record['task']}) is not served "
                         f"by this route" + (f"; use {route}" if route else ": it has no servable weights"),
                         code="wrong_route")
        return champion

    async def health(request: Request) -> JSONResponse:
        champion = holder.get()
        if champion is None:
            return JSONResponse({"status": "no_champion", "study": served}, 503)
        return JSONResponse({"status": "ok", "study": served, "run_id": champion.run_id, "kind": champion.kind})

    async def info(request: Request) -> JSONResponse:
        champion = holder.get()
        return JSONResponse({"study": served, "path": f"models/{served}/current",
                             "run_id": champion and champion.run_id, "kind": champion and champion.kind,
                             "loaded_at": champion and champion.loaded_at, "reloads": holder.reloads,
                             "reload_error": holder.reload_error, "champion": champion and champion.record})

    async def list_models(request: Request) -> JSONResponse:
        champion = holder.get()
        data = [] if champion is None else [{"id": served, "object": "model", "created": int(champion.loaded_at),
                                             "owned_by": "autopilot", "root": f"models/{served}/{champion.run_id}"}]
        return JSONResponse({"object": "list", "data": data})

    async def completions(request: Request):
        try:
            req = chat.parse(await json_body(request), served, study.settings.serve.max_tokens)
        except chat.BadRequest as e:
            return error(e.status, str(e), code=e.code, param=e.param)
        champion = champion_of("chat")
        if isinstance(champion, JSONResponse):
            return champion
        if req.stream:
            return StreamingResponse(iterate_in_threadpool(chat.stream(champion, served, req)),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        text, finish, usage = await run_in_threadpool(chat.generate, champion, req)
        return JSONResponse(chat.completion(champion, served, text, finish, usage))

    async def predict(request: Request):
        try:
            images = digit_images(await json_body(request))
        except chat.BadRequest as e:
            return error(e.status, str(e), code=e.code, param=e.param)
        champion = champion_of("classifier")
        if isinstance(champion, JSONResponse):
            return champion
        probabilities = await run_in_threadpool(classify, champion, images)
        return JSONResponse({"model": served, "run_id": champion.run_id,
                             "predictions": [{"label": max(range(len(p)), key=p.__getitem__), "probabilities": p}
                                             for p in probabilities]})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        holder.stop()

    routes = [Route("/health", health), Route("/models/info", info), Route("/v1/models", list_models),
              Route("/v1/chat/completions", completions, methods=["POST"]),
              Route("/v1/predict", predict, methods=["POST"])]
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(RequireKey, secret=secret, env_name=study.settings.serve.api_key_env)])
    app.state.holder = holder
    return app


class RequireKey:
    """ASGI middleware: every path but OPEN_PATHS needs `Authorization: Bearer KEY`, compared in constant time."""

    def __init__(self, app, secret: bytes | None, env_name: str):
        self.app, self.secret, self.env_name = app, secret, env_name

    def authorized(self, headers: Headers) -> bool:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode("utf-8"), self.secret)

    async def __call__(self, scope, receive, send) -> None:
        if (scope["type"] == "http" and self.secret is not None and scope["path"] not in OPEN_PATHS
                and not self.authorized(Headers(scope=scope))):
            response = error(401, "a valid API key is required: Authorization: Bearer KEY (the key is the value of "
                             f"${self.env_name} where the server runs)", code="invalid_api_key")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def json_body(request: Request) -> object:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise chat.BadRequest(f"the request body is not JSON: {e}") from None


def digit_images(body: object) -> list[list[float]]:
    """{"images": [image, ...]}: each image 64 pixel values (or 8 rows of 8), 0-16 as in scikit-learn's digits."""
    images = body.get("images") if isinstance(body, dict) else None
    if not isinstance(images, list) or not images:
        raise chat.BadRequest("the body must be {\"images\": [...]}: a list of 8x8 images (64 values 0-16, or 8 rows "
                              "of 8)", "images")
    flat = []
    for i, image in enumerate(images):
        pixels = [v for row in image for v in row] if image and isinstance(image[0], list) else image
        if (not isinstance(pixels, list) or len(pixels) != DIGIT_PIXELS
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 16 for v in pixels)):
            raise chat.BadRequest(f"images[{i}] must hold 64 numbers from 0 to 16 (an 8x8 digit)", "images")
        flat.append([float(v) for v in pixels])
    return flat


def classify(champion: Loaded, images: list[list[float]]) -> list[list[float]]:
    import torch

    x = torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    with champion.lock, torch.no_grad():
        return torch.softmax(champion.model(x), dim=1).tolist()


def serve(study: Study, host: str, port: int) -> None:
    """Run the server until Ctrl-C (uvicorn)."""
    import uvicorn

    key = api_key(study)
    check_bind(study, host, key)
    if key is None:
        log.warning("no API key ($%s is unset): every route is open to this machine's users",
                    study.settings.serve.api_key_env)
    uvicorn.run(build_app(study, key), host=host, port=port, log_level="info")
