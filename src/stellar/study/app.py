"""The study's local web app (Starlette + uvicorn): rater page, admin page, JSON API, manifest images.

Routes::

    GET  /                  rater page (static HTML/CSS/JS shipped in the package; no CDN, no build step)
    GET  /admin             admin page (asks for the admin token printed at start)
    GET  /static/NAME       one of the packaged files, looked up by name in a fixed table
    GET  /img/ID            a manifest image, by id only (the path comes from study.json)
    GET  /api/study         aspects and their questions, sign-in mode
    POST /api/login         {"rater"} -> {"token"}          (self sign-in; refused with --links-only)
    GET  /api/next          -> {"item", "progress"}          (Authorization: Bearer TOKEN)
    POST /api/answer        {"item", "answers": {aspect: "a"|"b"|"tie"}, "time_ms", "submission"}
    POST /api/undo          -> the reopened item
    GET  /api/admin         summary numbers                   (Authorization: Bearer ADMIN_TOKEN)

Security: the server binds 127.0.0.1 unless told otherwise and then also refuses requests whose
``Host`` is not a loopback name (DNS-rebinding guard); no request path or field reaches the file
system (images and static files come from fixed tables); every body is JSON of at most
``max_body`` bytes (413 above, checked on ``Content-Length`` and while reading), with exactly the
expected keys and types (400 otherwise) — nothing is written for a rejected request; tokens are
compared in constant time; responses carry a strict Content-Security-Policy (``'self'`` only).
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
from importlib import resources
from pathlib import Path

from stellar.errors import MissingDependencyError
from stellar.study.manifest import Manifest
from stellar.study.store import RequestError, StudyStore

MAX_BODY = 16 * 1024
IMAGE_ID_RE = re.compile(r"^i[0-9]{5,9}$")
STATIC_FILES = {"app.js": "text/javascript", "admin.js": "text/javascript", "style.css": "text/css"}
_MEDIA = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def _starlette():
    try:
        import starlette  # noqa: F401
    except ImportError:
        raise MissingDependencyError("starlette", "study", "the human-study web app") from None


def _static(name: str) -> bytes:
    return resources.files("stellar.study").joinpath("static", name).read_bytes()


def create_app(manifest: Manifest, store: StudyStore, *, admin_token: str, open_registration: bool = True,
               max_body: int = MAX_BODY, allowed_hosts: tuple[str, ...] | None = LOOPBACK_HOSTS):  # fmt: skip
    """The ASGI application of one study.

    Args:
        manifest: the study.
        store: its judgement database.
        admin_token: bearer token of ``/api/admin``.
        open_registration: raters may sign in by typing an id (else only ``raters add`` links work).
        max_body: largest accepted request body in bytes.
        allowed_hosts: accepted ``Host`` header names (``None``: any, for a deliberate non-loopback bind).
    """
    _starlette()
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    pages = {name: _static(name) for name in ("index.html", "admin.html")}
    static = {name: _static(name) for name in STATIC_FILES}
    images = {iid: (Path(meta["path"]), _MEDIA.get(Path(meta["path"]).suffix.lower(), "application/octet-stream")) for iid, meta in manifest.images.items()}
    aspects = manifest.aspects

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def body_json(request: Request, keys: dict[str, tuple[type, bool]]) -> dict:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            raise RequestError(413, f"request body larger than {max_body} bytes")
        data = b""
        async for chunk in request.stream():
            data += chunk
            if len(data) > max_body:
                raise RequestError(413, f"request body larger than {max_body} bytes")
        try:
            obj = json.loads(data or b"null")
        except ValueError:
            raise RequestError(400, "body is not JSON") from None
        if not isinstance(obj, dict):
            raise RequestError(400, "body must be a JSON object")
        unknown = set(obj) - set(keys)
        if unknown:
            raise RequestError(400, f"unknown field(s) {sorted(unknown)}")
        for k, (types, required) in keys.items():
            if k not in obj:
                if required:
                    raise RequestError(400, f"field {k!r} is required")
                continue
            if not isinstance(obj[k], types) or (isinstance(obj[k], bool) and types is not bool):
                raise RequestError(400, f"field {k!r} has the wrong type")
        return obj

    def bearer(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    async def rater_of(request: Request) -> str:
        return (await run_in_threadpool(store.authenticate, bearer(request))).rater

    def item_payload(item_id: str | None) -> dict | None:
        if item_id is None:
            return None
        it = store.items[item_id]
        return {"id": it["id"], "prompt": it["prompt"], "references": [f"/img/{r}" for r in it["references"]], "a": f"/img/{it['a']['image']}", "b": f"/img/{it['b']['image']}"}

    def guarded(fn):
        async def endpoint(request: Request):
            try:
                return await fn(request)
            except RequestError as exc:
                return error(exc.status, exc.message)

        return endpoint

    async def page(request: Request):
        name = "admin.html" if request.url.path.rstrip("/") == "/admin" else "index.html"
        return Response(pages[name], media_type="text/html; charset=utf-8")

    async def static_file(request: Request):
        name = request.path_params["name"]
        if name not in static:
            return error(404, "not found")
        return Response(static[name], media_type=STATIC_FILES[name] + "; charset=utf-8")

    async def image(request: Request):
        iid = request.path_params["iid"]
        if not IMAGE_ID_RE.match(iid) or iid not in images:
            return error(404, "no such image")
        path, media = images[iid]
        return FileResponse(path, media_type=media, headers={"Cache-Control": "private, max-age=86400"})

    async def study_info(request: Request):
        return JSONResponse({"aspects": aspects, "open_registration": open_registration, "choices": ["a", "b", "tie"]})

    async def login(request: Request):
        body = await body_json(request, {"rater": (str, True)})
        if not open_registration:
            raise RequestError(403, "this study accepts personal links only: ask the organiser for yours")
        token = await run_in_threadpool(store.add_rater, body["rater"], "self")
        return JSONResponse({"token": token, "rater": body["rater"]})

    async def next_item(request: Request):
        rater = await rater_of(request)
        item = await run_in_threadpool(store.next_item, rater)
        return JSONResponse({"rater": rater, "item": item_payload(item), "progress": await run_in_threadpool(store.progress, rater)})

    async def answer(request: Request):
        rater = await rater_of(request)
        body = await body_json(request, {"item": (str, True), "answers": (dict, True), "time_ms": (int, False), "submission": (str, True)})
        t = body.get("time_ms")
        if t is not None and not 0 <= t <= 86_400_000:
            raise RequestError(400, "time_ms must be between 0 and 86400000")
        if not 8 <= len(body["submission"]) <= 64 or not re.match(r"^[A-Za-z0-9_-]+$", body["submission"]):
            raise RequestError(400, "submission must be 8–64 letters, digits, '_' or '-'")
        written = await run_in_threadpool(store.submit, rater, body["item"], body["answers"], t, body["submission"])
        item = await run_in_threadpool(store.next_item, rater)  # only after the answer is committed
        return JSONResponse({"recorded": True, "duplicate": not written, "item": item_payload(item), "progress": await run_in_threadpool(store.progress, rater)})

    async def undo(request: Request):
        rater = await rater_of(request)
        await body_json(request, {})
        item = await run_in_threadpool(store.undo, rater)
        return JSONResponse({"item": item_payload(item), "progress": await run_in_threadpool(store.progress, rater)})

    async def admin(request: Request):
        given = bearer(request) or ""
        if not hmac.compare_digest(given.encode(), admin_token.encode()):
            raise RequestError(401, "admin token required (printed by `stellar study serve`)")
        return JSONResponse(await run_in_threadpool(store.summary))

    routes = [
        Route("/", page),
        Route("/admin", page),
        Route("/static/{name}", static_file),
        Route("/img/{iid}", image),
        Route("/api/study", study_info),
        Route("/api/login", guarded(login), methods=["POST"]),
        Route("/api/next", guarded(next_item)),
        Route("/api/answer", guarded(answer), methods=["POST"]),
        Route("/api/undo", guarded(undo), methods=["POST"]),
        Route("/api/admin", guarded(admin)),
    ]
    app = Starlette(routes=routes)
    return _Guard(app, max_body=max_body, allowed_hosts=allowed_hosts)


class _Guard:
    """Outermost ASGI layer: Host check, early 413 on ``Content-Length``, security headers."""

    def __init__(self, app, *, max_body: int, allowed_hosts: tuple[str, ...] | None):
        self.app = app
        self.max_body = max_body
        self.allowed = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    async def _reply(self, send, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.allowed is not None:
            host = headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
            if name.lower() not in self.allowed:
                return await self._reply(send, 421, f"host {host!r} not served (the study listens on loopback)")
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return await self._reply(send, 413, f"request body larger than {self.max_body} bytes")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + [
                    (b"content-security-policy", _CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"no-store") if not scope["path"].startswith("/img/") else (b"x-study", b"1"),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def new_admin_token() -> str:
    return secrets.token_urlsafe(24)


def serve(study: str | Path, *, host: str = "127.0.0.1", port: int = 8000, open_registration: bool = True, lease_s: float = 1800.0,
          admin_token: str | None = None, verify: bool = True, log_level: str = "warning") -> None:  # fmt: skip
    """Verify the study's images, print the rater and admin URLs, and serve until interrupted."""
    _starlette()
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError("uvicorn", "study", "the human-study web app") from None
    from stellar.study.manifest import load_manifest, verify_images

    manifest = load_manifest(study)
    if verify:
        verify_images(manifest, progress=True)
    store = StudyStore(manifest, lease_s=lease_s)
    token = admin_token or new_admin_token()
    loopback = host in ("127.0.0.1", "localhost", "::1")
    app = create_app(manifest, store, admin_token=token, open_registration=open_registration, allowed_hosts=LOOPBACK_HOSTS if loopback else None)
    shown = f"[{host}]" if ":" in host else host
    print(f"study {manifest.folder}: {len(manifest.items)} items, aspects {', '.join(manifest.aspect_ids)}")
    print(f"raters: http://{shown}:{port}/   (enter a rater id{'' if open_registration else ' — disabled: personal links only'})")
    print(f"admin:  http://{shown}:{port}/admin#token={token}")
    if not loopback:
        print("WARNING: listening beyond this machine; anyone who can reach it can sign in as a rater" + ("" if open_registration else " with a link"))
    print("stop with Ctrl-C; every acknowledged answer is already on disk", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
