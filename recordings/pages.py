"""The review pages: the trainers' review room and an operator's own reviewed calls.

    add_review_pages(app)   # after setup_auth and the console routes (create_web_app does both)

- `GET /reviews` (trainer, supervisor, admin): web/static/reviews.html. Calls with
  recordings (filters), the player with the call's events and paused spans on its
  progress bar, the caller card, timestamped comments and the QA score card.
- `GET /my-reviews` (every signed-in role; an operator sees the calls of his own
  extensions): web/static/my-reviews.html. His scores, the comments, his audio.

The pages are static files; everything they show comes from the JSON API of
recordings.http, which decides who sees what (an operator only his own recordings). A
page's role check here only spares an operator a page whose every request would be
refused. The scripts and styles are served by the console's `/static/...` route; an app
without it gets a route for these pages' own assets only.

The pages run no inline script or style: the policy is the console's, plus `media-src
'self'` for the recordings' audio.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from web.access import require_role
from web.pages import STATIC_DIR
from web.users import ROLES

__all__ = ["PAGE_HEADERS", "REVIEW_PAGE_ROLES", "add_review_pages"]

REVIEW_PAGE_ROLES = ("trainer", "supervisor", "admin")
ASSETS = ("common.js", "common.css", "reviews.js", "reviews.css", "my-reviews.js")

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; media-src 'self'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}

_MISSING = ("<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Callbridge</title>"
            "<main><h1>Callbridge</h1><p>This page is not installed (web/static/{name}).</p>"
            "</main></html>")


def _page(static_dir: Path, name: str) -> web.Response | web.FileResponse:
    path = static_dir / name
    if path.is_file():
        return web.FileResponse(path, headers=PAGE_HEADERS)
    return web.Response(text=_MISSING.format(name=name), content_type="text/html", status=404,
                        headers=PAGE_HEADERS)


def _has_static_route(app: web.Application) -> bool:
    for resource in app.router.resources():
        info = resource.get_info()
        if str(info.get("formatter") or info.get("path") or info.get("prefix") or "").startswith("/static/"):
            return True
    return False


def add_review_pages(app: web.Application, *, static_dir: Path = STATIC_DIR) -> None:
    """Add `/reviews` and `/my-reviews` (and their assets if the app serves no /static/)."""

    @require_role(*REVIEW_PAGE_ROLES)
    async def reviews_page(request: web.Request) -> web.StreamResponse:
        return _page(static_dir, "reviews.html")

    @require_role(*ROLES)
    async def my_reviews_page(request: web.Request) -> web.StreamResponse:
        return _page(static_dir, "my-reviews.html")

    @require_role(*ROLES)
    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in ASSETS or not (static_dir / name).is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(static_dir / name, headers=PAGE_HEADERS)

    serve_assets = not _has_static_route(app)
    app.router.add_get("/reviews", reviews_page)
    app.router.add_get("/my-reviews", my_reviews_page)
    if serve_assets:
        names = "|".join(re.escape(name) for name in ASSETS)
        app.router.add_get(f"/static/{{name:({names})}}", asset)
