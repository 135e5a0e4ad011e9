"""The admin page at ``/``: plain HTML, CSS and JavaScript from this package
(``page/``), nothing fetched from elsewhere, under a strict Content-Security-Policy."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
FILES = {
    "index.html": "text/html",
    "admin.js": "text/javascript",
    "admin.css": "text/css",
    "overview.js": "text/javascript",
    "message.js": "text/javascript",
    "views.js": "text/javascript",
}


def _read(name: str) -> bytes:
    return resources.files("daemon.api").joinpath("page", name).read_bytes()


async def index(_: web.Request) -> web.Response:
    return _answer("index.html")


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in FILES or name == "index.html":
        raise web.HTTPNotFound()
    return _answer(name)


def _answer(name: str) -> web.Response:
    return web.Response(
        body=_read(name),
        content_type=FILES[name],
        charset="utf-8",
        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"},
    )


def add_page(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/page/{name}", asset)
