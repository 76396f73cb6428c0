"""What every page shares: its static assets (HTML, scripts, styles) and the headers
they are served with. The pages have no inline script or style: they run under the
strictest Content-Security-Policy.

    add_favicon(app)   # where the app is built (bridge.service): /favicon.ico for every page

Browsers ask for /favicon.ico on their own, so no page needs a <link rel="icon">; the
path is public (web.auth DEFAULT_PUBLIC), so the login and refusal pages have it too."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}

FAVICON = STATIC_DIR / "favicon.svg"


async def favicon(request: web.Request) -> web.StreamResponse:
    headers = {"Content-Type": "image/svg+xml", "X-Content-Type-Options": "nosniff",
               "Cache-Control": "max-age=86400"}
    return web.FileResponse(FAVICON, headers=headers)


def add_favicon(app: web.Application) -> None:
    """GET /favicon.ico: the SVG icon (an SVG at the .ico path: every browser of today reads it)."""
    app.router.add_get("/favicon.ico", favicon)
