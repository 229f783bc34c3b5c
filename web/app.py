"""The ASGI app: the page, its static files, and the JSON API under /api/ over one open Searcher.

    GET  /                                           the page, handed the server's page size and upload limit
    GET  /static/FILE                                its script, style sheet and icon
    GET  /api/info                                   `assoc info --json`
    GET  /api/search?q=WORDS[&k=&offset=&min_score=]  `assoc query --json`, each hit with its photo's "id"
                                                     (or like=ID: searching with a photo, gallery or upload;
                                                     both: the photo as a plus term beside the words')
         [&in=FOLDER...&since=DATE&until=DATE&type=TYPES]  only the photos that meet these (`assoc query --in`...)
    POST /api/search[?k=&offset=&min_score=&q=...]   the same, with a photo as the request body
    GET  /api/localize?id=ID&q=WORDS                 `assoc localize --json`
    POST /api/localize?q=WORDS                       the same, for a photo in the request body
    POST /api/uploads                                keep a photo (the body) in memory: {"id", "width", "height"}
    GET  /api/photos/ID/thumbnail.jpg                a small JPEG
    GET  /api/photos/ID/photo.jpg                    the photo as shown large
    GET  /api/photos/ID/heatmap.png?q=WORDS[&word=N]  the phrase's map (or its word N's) to lay over it
    GET  /api/photos/ID/words?fx=X&fy=Y[&q=WORDS]     the words matching a point (fractions of the photo's size)
    GET  /duplicates[?threshold=T]                   the page of groups of photos that show one picture
    GET  /api/duplicates[?threshold=T]               `assoc duplicates --json` (each photo's id: its content_hash)

q takes the combined-query syntax (assoc.runtime.search.combined), every term words: a client names no
file. A folder to search in is only compared with indexed paths (never opened), and must be absolute.

Errors are {"error": "one line"} with a 4xx/5xx status, never a traceback. Searches and pictures run
in Starlette's thread pool (they are CPU work); the Searcher is thread-safe. Numbers the page needs
(PAGE_DEFAULT, assoc.web.photos.UPLOAD_BYTES) live here in Python and reach it as data attributes of
the page's <body>; app.js has none of its own.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.responses import JSONResponse as _StarletteJSON
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..api.json_text import dumps
from ..runtime.errors import AssocError, GalleryError, ImageLoadError, NoGalleryError, QueryError
from ..runtime.search.duplicates import DEFAULT_THRESHOLD
from ..runtime.search.filters import PhotoFilter
from .photos import PhotoNotFound, Photos, TooManyPixels
from .security import Guard

STATIC = Path(__file__).resolve().parent / "static"
PAGE_DEFAULT = 40  # hits asked for per request when k is not given; the page asks for as many
PAGE_MAX = 200
OFFSET_MAX = 10_000
IMAGE_CACHE = "private, max-age=3600"  # a thumbnail's id names the indexed content; a new index gives new ids
# A photo's file may be replaced under its id: its view and heatmaps carry the version as an ETag and a
# browser asks again (a stat, then 304) before it shows its copy.
REVALIDATE = "private, no-cache"


class JSONResponse(_StarletteJSON):
    """JSON that names files exactly, as the CLI's --json does (assoc.api.json_text)."""

    def render(self, content: object) -> bytes:
        return dumps(content).encode("utf-8")


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(photos: Photos, *, token: str | None, loopback_only: bool, page_size: int = PAGE_DEFAULT) -> Guard:
    """The app over the photos of an open Searcher. token: asked of every request when given;
    loopback_only: answer only requests addressed to a loopback name (see assoc.web.security);
    page_size: hits the page asks for at a time (its upload limit is photos.upload_bytes)."""
    if not 1 <= page_size <= PAGE_MAX:
        raise ValueError(f"page_size must be between 1 and {PAGE_MAX}")
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    html = html.replace("{{page_size}}", str(page_size)).replace("{{upload_bytes}}", str(photos.upload_bytes))

    async def page(request: Request) -> Response:
        return HTMLResponse(html, headers={"cache-control": "no-cache"})

    duplicates_html = (STATIC / "duplicates.html").read_text(encoding="utf-8")
    duplicates_html = duplicates_html.replace("{{threshold}}", f"{DEFAULT_THRESHOLD:g}")

    async def duplicates_page(request: Request) -> Response:
        return HTMLResponse(duplicates_html, headers={"cache-control": "no-cache"})

    def duplicates(request: Request) -> Response:
        raw = request.query_params.get("threshold")
        try:
            threshold = float(raw) if raw else DEFAULT_THRESHOLD
        except ValueError:
            raise BadRequest(400, f"threshold must be a number above 0 and at most 1, not {raw!r}") from None
        return JSONResponse(photos.searcher.duplicates(threshold).to_dict())

    def info(request: Request) -> Response:
        return JSONResponse(photos.searcher.info().to_dict())

    def search(request: Request) -> Response:
        params = request.query_params
        like = params.get("like")
        text = params.get("q")
        if like is None and text is None:
            raise BadRequest(400, "give q=WORDS or like=PHOTO_ID")
        offset, end, min_score = _page(params)
        return JSONResponse(photos.hits(photos.search(text, like, end, min_score, _filter(params))[offset:]))

    async def search_with_body(request: Request) -> Response:
        data = await _body(request, photos.upload_bytes)
        params = request.query_params
        offset, end, min_score = _page(params)
        where, text = _filter(params), params.get("q")

        def run() -> Response:
            return JSONResponse(
                photos.hits(photos.search(text, photos.upload(data).id, end, min_score, where)[offset:])
            )

        return await run_in_threadpool(run)

    def localize(request: Request) -> Response:
        photo = photos.get(_required(request, "id"))
        return JSONResponse(photos.localize(photo, _required(request, "q")).to_dict())

    async def localize_body(request: Request) -> Response:
        data, phrase = await _body(request, photos.upload_bytes), _required(request, "q")

        def run() -> Response:
            return JSONResponse(photos.localize(photos.upload(data), phrase).to_dict())

        return await run_in_threadpool(run)

    async def upload(request: Request) -> Response:
        data = await _body(request, photos.upload_bytes)
        photo = await run_in_threadpool(photos.upload, data)
        width, height = photo.size
        return JSONResponse({"id": photo.id, "width": width, "height": height})

    def words_at(request: Request) -> Response:
        photo = photos.get(request.path_params["id"])
        fx, fy = (_fraction(request.query_params.get(name), name) for name in ("fx", "fy"))
        return JSONResponse(photos.words_at(photo, fx, fy, request.query_params.get("q")).to_dict())

    def thumbnail(request: Request) -> Response:
        data = photos.thumbnail_jpeg(photos.get(request.path_params["id"]))
        return Response(data, media_type="image/jpeg", headers={"cache-control": IMAGE_CACHE})

    def photo(request: Request) -> Response:
        found = photos.get(request.path_params["id"])
        return _revalidated(request, "image/jpeg", lambda: photos.view_jpeg(found), photos.version(found))

    def heatmap(request: Request) -> Response:
        found = photos.get(request.path_params["id"])
        phrase, raw = _required(request, "q"), request.query_params.get("word")
        word = _int(raw, "word", 0, 1000) if raw else None
        tag = (photos.version(found), phrase, word)
        return _revalidated(request, "image/png", lambda: photos.heatmap_png(found, phrase, word), *tag)

    routes = [
        Route("/", page),
        Route("/api/info", info),
        Route("/api/search", search, methods=["GET"]),
        Route("/api/search", search_with_body, methods=["POST"]),
        Route("/api/localize", localize, methods=["GET"]),
        Route("/api/localize", localize_body, methods=["POST"]),
        Route("/api/uploads", upload, methods=["POST"]),
        Route("/api/photos/{id}/thumbnail.jpg", thumbnail),
        Route("/api/photos/{id}/photo.jpg", photo),
        Route("/api/photos/{id}/heatmap.png", heatmap),
        Route("/api/photos/{id}/words", words_at),
        Route("/duplicates", duplicates_page),
        Route("/api/duplicates", duplicates),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers: dict[Any, Any] = {
        kind: _error for kind in (BadRequest, HTTPException, AssocError, PhotoNotFound, TooManyPixels, Exception)
    }
    app = Starlette(routes=routes, exception_handlers=handlers)
    return Guard(app, token=token, loopback_only=loopback_only)


def _revalidated(request: Request, media: str, make: Callable[[], bytes], *version: object) -> Response:
    """A picture of one version of a photo: 304 when the browser's copy is of that version (If-None-Match),
    else made now; either way tagged so that the browser asks again next time."""
    etag = '"' + hashlib.blake2b(repr(version).encode(), digest_size=12).hexdigest() + '"'
    headers = {"cache-control": REVALIDATE, "etag": etag}
    asked = [tag.strip().removeprefix("W/") for tag in request.headers.get("if-none-match", "").split(",")]
    if etag in asked:
        return Response(status_code=304, headers=headers)
    return Response(make(), media_type=media, headers=headers)


def _page(params: Any) -> tuple[int, int, float | None]:
    """Where a page of hits starts and ends, and the minimum score."""
    k = _int(params.get("k"), "k", 1, PAGE_MAX, PAGE_DEFAULT)
    offset = _int(params.get("offset"), "offset", 0, OFFSET_MAX, 0)
    raw = params.get("min_score")
    min_score = None
    if raw:
        try:
            min_score = float(raw)
        except ValueError:
            min_score = math.nan
        if not math.isfinite(min_score):
            raise BadRequest(400, f"min_score must be a number, not {raw!r}")
    return offset, offset + k, min_score


def _filter(params: Any) -> PhotoFilter:
    """The photos a search may return (in=, since=, until=, type=; each optional): a QueryError (400) for
    what is not a date, a type or an absolute folder."""
    folders = [folder for folder in params.getlist("in") if folder]
    for folder in folders:
        if not os.path.isabs(folder):
            raise BadRequest(400, f"in must name an absolute folder, not {folder!r}")
    return PhotoFilter.of(folders, params.get("since") or None, params.get("until") or None, params.get("type"))


def _int(raw: str | None, name: str, lo: int, hi: int, default: int | None = None) -> int:
    if raw is None or raw == "":
        if default is None:
            raise BadRequest(400, f"{name} is missing")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(400, f"{name} must be a whole number, not {raw!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(400, f"{name} must be between {lo} and {hi}")
    return value


def _fraction(raw: str | None, name: str) -> float:
    """A point's place across the photo, 0 at its left or top edge and 1 at the other."""
    try:
        value = float(raw) if raw is not None else float("nan")
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise BadRequest(400, f"{name} must be a number from 0 to 1")
    return value


def _required(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if value is None:
        raise BadRequest(400, f"{name} is missing")
    return value


async def _body(request: Request, most: int) -> bytes:
    """The request body, refused past `most` bytes (the upload limit) before more of it is read."""
    limit = f"the photo is over the {most >> 20} MB upload limit"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > most:
        raise BadRequest(413, limit)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > most:
            raise BadRequest(413, limit)
    return bytes(data)


async def _error(request: Request, exc: Exception) -> Response:
    """Every failure as {"error": one line}. An unexpected one says no more (Starlette re-raises it after
    this answer, and uvicorn logs its traceback on the server's console)."""
    if isinstance(exc, BadRequest):
        status = exc.status
    elif isinstance(exc, TooManyPixels):
        status = 413
    elif isinstance(exc, HTTPException):  # no such route, or a method it does not take
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    elif isinstance(exc, PhotoNotFound | NoGalleryError):
        status = 404
    elif isinstance(exc, QueryError | ImageLoadError):
        status = 400
    elif isinstance(exc, GalleryError | AssocError):  # a gallery that cannot serve: damaged, another model's
        status = 503
    else:
        return JSONResponse({"error": "internal error: see the server's log"}, status_code=500)
    return JSONResponse({"error": " ".join(str(exc).split())}, status_code=status)
