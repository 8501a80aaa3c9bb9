"""``seqlab serve``: the G2P model behind a JSON API and a web page.

Routes:

    GET  /            the page: type words, see phones and an attention heatmap per word
    GET  /static/...  its script and style (no CDN: the page works offline)
    GET  /api/info    the model, the decoding settings, the limits, example words, and the
                      requests and batches decoded so far
    POST /api/g2p     {"words": ["hello", ...], "beam": 5 (optional)}
                      -> {"beam": 5, "results": [{"word", "phones", "score", "parts"}]}

A word is normalised by :func:`seqlab.tasks.g2p.normalize_word` (lowercase,
accents stripped, split at hyphens).  ``score`` is ``log P(phones | word)``
under the model, EOS included (summed over the parts of a hyphenated word);
each part carries its attention weights ``(len(phones) + 1, len(letters))``,
the alignment picture of Bahdanau et al. 2015, Fig. 3, one row per output
phone and the final ``</s>``.

Bad input is answered with a 4xx status and ``{"error": "...", "hint":
"..."}``, never a 500: a body over ``max_body_bytes`` (413), malformed JSON
or a wrong shape (400), a word that cannot be pronounced (422, naming the
word and the character).

Concurrent requests are batched: one worker decodes, and the requests that
arrive while it is busy are decoded together as its next batch.  This is the
adaptive batching of Clipper (Crankshaw et al. 2017, "Clipper: A
Low-Latency Online Prediction Serving System", sec. 4.3) without its tuned
batch-size cap or delay: a lone request is decoded at once, and the batch
grows only with the load.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
import sys
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import SeqlabError
from ..tasks.g2p import (
    COMPUTE,
    MAX_WORD_LENGTH,
    G2PModel,
    load_pretrained,
    model_label,
    normalize_word,
)

__all__ = ["ServeConfig", "EXAMPLES", "create_app", "pronounce_with_attention", "serve", "BackgroundServer"]

EXAMPLES = ("hello", "phoneme", "knight", "quixotic", "Zürich", "well-known", "colonel", "seqlab")
"""Words the page offers to click: regular, silent letters, accents, hyphens, one made-up."""

MAX_BEAM = 16
# Idle keep-alive connections stay open this long.  It must outlast the clients' own idle limit (httpx: 5 s):
# at uvicorn's default of 5 s a client can send a request on a connection the server is just closing,
# and the request fails with a connection reset.
KEEP_ALIVE_SECONDS = 30
_STATIC = {  # file -> media type; the only files /static serves
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_HEADERS = {
    # Everything the page needs comes from this server; nothing may be loaded from elsewhere.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True)
class ServeConfig:
    """What ``seqlab serve`` serves and the limits it enforces."""

    checkpoint: str | None = None  # a checkpoint folder; None: the shipped model
    fast: bool = False  # with no checkpoint: the shipped distilled model instead of the ensemble
    beam: int = 5  # default beam size (a request may ask for 1..MAX_BEAM)
    compute: str = "float32"  # how the matrix products run: one of COMPUTE (G2PModel.with_compute)
    max_words: int = 64  # most words in one request
    max_body_bytes: int = 16_384  # largest request body
    max_batch_words: int = 1024  # most words the worker decodes in one batch

    def validate(self) -> None:
        if not 1 <= self.beam <= MAX_BEAM:
            raise SeqlabError(f"beam must be in 1..{MAX_BEAM}, got {self.beam}")
        if self.compute not in COMPUTE:
            raise SeqlabError(f"compute must be one of {', '.join(COMPUTE)}, got {self.compute!r}")
        if self.max_words < 1 or self.max_body_bytes < 64 or self.max_batch_words < self.max_words:
            raise SeqlabError("need max_words >= 1, max_body_bytes >= 64 and max_batch_words >= max_words")


class _ApiError(Exception):
    """A bad request: answered as ``{"error": message, "hint": hint}`` with ``status``."""

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint


def _error(status: int, message: str, hint: str | None = None) -> JSONResponse:
    body = {"error": message} | ({"hint": hint} if hint else {})
    return JSONResponse(body, status_code=status, headers=_HEADERS)


# --------------------------------------------------------------------------
# The model side
# --------------------------------------------------------------------------


@torch.no_grad()
def pronounce_with_attention(
    model: G2PModel, words: list[str], *, beam: int = 5, batch_size: int = 256
) -> list[dict[str, Any]]:
    """Phones, score and attention weights of normalised words (no hyphens: one part each).

    The phones come from :meth:`G2PModel.pronounce`.  Score and attention
    come from one teacher-forced pass over the decoded phones, batched
    (:meth:`G2PModel.score`):

        score = Σ_t log p(y_t | y_<t, x),  t = 1 .. |y| + 1 (the last is </s>)

    which is the score the search gave the hypothesis (before length
    normalisation).  Returns ``{"letters", "phones", "score", "attention"}``
    per word; ``attention`` is None for a model without attention.
    """
    phones = model.pronounce(words, beam=beam, batch_size=batch_size)
    out = []
    for word, ph, (score, weights) in zip(words, phones, model.score(words, phones, batch_size=batch_size)):
        attention = None if weights is None else [[round(float(w), 4) for w in line] for line in weights.tolist()]
        out.append({"letters": word, "phones": ph, "score": score, "attention": attention})
    return out


class _Batcher:
    """One worker decodes; requests arriving meanwhile wait and form its next batch."""

    def __init__(self, model: G2PModel, max_batch_words: int) -> None:
        self.model = model
        self.max_batch_words = max_batch_words
        self.queue: asyncio.Queue[tuple[list[str], int, asyncio.Future]] = asyncio.Queue()
        self.batches = 0  # batches decoded so far
        self.requests = 0  # requests answered in them
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, words: list[str], beam: int) -> list[dict[str, Any]]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((words, beam, future))
        return await future

    async def _work(self) -> None:
        pending: list[tuple[list[str], int, asyncio.Future]] = []
        while True:
            if not pending:
                pending.append(await self.queue.get())
            while not self.queue.empty():
                pending.append(self.queue.get_nowait())
            # One beam size per batch; the rest wait for the next turn.
            beam = pending[0][1]
            batch, rest, size = [], [], 0
            for item in pending:
                if item[1] == beam and (not batch or size + len(item[0]) <= self.max_batch_words):
                    batch.append(item)
                    size += len(item[0])
                else:
                    rest.append(item)
            pending = rest
            batch = [item for item in batch if not item[2].done()]  # the client went away
            if not batch:
                continue
            words = [w for item in batch for w in item[0]]
            try:
                results = await asyncio.to_thread(pronounce_with_attention, self.model, words, beam=beam)
            except Exception as err:  # a model failure fails its requests, not the worker
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            self.batches += 1
            self.requests += len(batch)
            k = 0
            for item_words, _, future in batch:
                if not future.done():
                    future.set_result(results[k : k + len(item_words)])
                k += len(item_words)


# --------------------------------------------------------------------------
# Request checking
# --------------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    too_big = _ApiError(413, f"request body larger than {limit:,} bytes", hint="send fewer words per request")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    return bytes(body)


def _parse_request(body: bytes, config: ServeConfig) -> tuple[list[str], list[list[str]], int]:
    """``(raw words, their normalised parts, beam)`` from a request body, or an :class:`_ApiError`."""
    shape = 'send a JSON object like {"words": ["hello", "world"]}'
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise _ApiError(400, "request body is not valid JSON", hint=shape) from None
    if not isinstance(data, dict):
        raise _ApiError(400, "request body must be a JSON object", hint=shape)
    unknown = sorted(set(data) - {"words", "beam"})
    if unknown:
        raise _ApiError(400, f"unknown key(s) {', '.join(map(repr, unknown))}", hint="valid keys: words, beam")
    words = data.get("words")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise _ApiError(400, '"words" must be a list of strings', hint=shape)
    if not words:
        raise _ApiError(400, "no words given", hint=shape)
    if len(words) > config.max_words:
        raise _ApiError(413, f"too many words: {len(words)} > {config.max_words}", hint="split them over requests")
    beam = data.get("beam", config.beam)
    if not isinstance(beam, int) or isinstance(beam, bool) or not 1 <= beam <= MAX_BEAM:
        raise _ApiError(400, f'"beam" must be an integer in 1..{MAX_BEAM}, got {beam!r}')
    parts = []
    for i, word in enumerate(words):
        try:
            parts.append(normalize_word(word))
        except SeqlabError as err:
            raise _ApiError(422, f"words[{i}]: {err}", hint=err.hint) from None
    return words, parts, beam


def _word_result(word: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "word": word,
        "phones": [ph for part in parts for ph in part["phones"]],
        "score": sum(part["score"] for part in parts),
        "parts": parts,
    }


# --------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------


def create_app(config: ServeConfig = ServeConfig(), *, model: G2PModel | None = None) -> FastAPI:
    """The FastAPI app; ``model`` overrides ``config.checkpoint`` (tests pass a loaded model)."""
    config.validate()
    model = model if model is not None else load_pretrained(config.checkpoint, fast=config.fast)
    parameters = sum(p.numel() for p in model.model.parameters())  # before conversion turns weights into buffers
    model = model.with_compute(config.compute)
    info = {
        "model": {
            "checkpoint": model_label(config.checkpoint, fast=config.fast),
            "compute": config.compute,
            "parameters": parameters,
            "epoch": model.meta.get("epoch"),
            "dev": model.meta.get("metrics"),
            "ensemble_members": len(model.meta.get("members", [])) or None,
        },
        "beam": config.beam,
        "max_beam": MAX_BEAM,
        "max_words": config.max_words,
        "max_body_bytes": config.max_body_bytes,
        "max_word_length": MAX_WORD_LENGTH,
        "examples": list(EXAMPLES),
    }

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.batcher = _Batcher(model, config.max_batch_words)
        app.state.batcher.start()
        yield
        await app.state.batcher.stop()

    app = FastAPI(title="seqlab G2P", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config

    @app.exception_handler(_ApiError)
    async def api_error(request: Request, err: _ApiError) -> JSONResponse:
        return _error(err.status, err.message, err.hint)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return _error(err.status_code, str(err.detail))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(err).__name__}")

    @app.get("/")
    async def page() -> Response:
        return _static_file("index.html")

    @app.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in _STATIC or name == "index.html":
            raise _ApiError(404, f"no such file: {name}")
        return _static_file(name)

    @app.get("/api/info")
    async def api_info(request: Request) -> JSONResponse:
        batcher = request.app.state.batcher
        stats = {"requests": batcher.requests, "batches": batcher.batches}
        return JSONResponse({**info, "stats": stats}, headers=_HEADERS)

    @app.post("/api/g2p")
    async def api_g2p(request: Request) -> JSONResponse:
        words, parts, beam = _parse_request(await _read_body(request, config.max_body_bytes), config)
        flat = [p for ps in parts for p in ps]
        decoded = await request.app.state.batcher.submit(flat, beam)
        results, k = [], 0
        for word, ps in zip(words, parts):
            results.append(_word_result(word, decoded[k : k + len(ps)]))
            k += len(ps)
        return JSONResponse({"beam": beam, "results": results}, headers=_HEADERS)

    return app


def _static_file(name: str) -> Response:
    content = resources.files("seqlab.serve").joinpath("static", name).read_bytes()
    return Response(content, media_type=_STATIC[name], headers=_HEADERS)


# --------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, or a one-line error (port taken, address not on this machine)."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET  # a host name such as localhost
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OverflowError:
        sock.close()
        raise SeqlabError(f"cannot listen on port {port}: ports are 0..65535") from None
    except OSError as err:
        sock.close()
        hint = "pick another port: --port 8001" if err.errno == 98 else "use --host 127.0.0.1 (this machine only)"
        raise SeqlabError(f"cannot listen on {host}:{port}: {err.strerror or err}", hint=hint) from None
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _uvicorn(app: FastAPI):
    """A uvicorn server for ``app``, to be run on sockets of our own (so bind errors are ours to report)."""
    import uvicorn  # only the server needs it, not the API

    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=KEEP_ALIVE_SECONDS)
    return uvicorn.Server(config)


def serve(config: ServeConfig, *, host: str = "127.0.0.1", port: int = 8000, log=print) -> None:
    """Serve until interrupted (``seqlab serve``)."""
    app = create_app(config)  # load the model before taking the port
    sock = _listen(host, port)
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    log(f"seqlab serve: http://{shown}:{port}/  (beam {config.beam}; Ctrl-C stops)")
    if not _is_loopback(host):
        print(f"note: listening on {host}, so other machines can reach this server; it has no authentication",
              file=sys.stderr)
    _uvicorn(app).run(sockets=[sock])


class BackgroundServer:
    """Serve an app from a thread on a free loopback port (tests, benchmarks, screenshots).

    Use as a context manager: ``with BackgroundServer(app) as url: ...``.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self._sock = _listen(host, port)
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        self._server = _uvicorn(app)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise SeqlabError("the server thread stopped before it started")
            self._thread.join(0.02)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()

