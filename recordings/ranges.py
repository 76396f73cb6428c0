"""HTTP Range checks for the audio route: a refused Range must be audited as a refusal."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web


def unsatisfiable_range(request: web.Request, path: Path, size: int) -> str | None:
    """Why aiohttp's FileResponse would answer this Range with 416, or None (its own rules)."""
    if "Range" not in request.headers:
        return None
    if_range = request.if_range
    if if_range is not None and path.stat().st_mtime > if_range.timestamp():
        return None  # the file changed: the whole file is sent, the Range is ignored
    try:
        rng = request.http_range
    except ValueError:
        return "malformed or multiple Range"
    start = rng.start
    if start is None:
        return None
    if start < 0 and rng.stop is None:
        start = max(0, start + size)
    return f"the range starts past the end of the file ({size} bytes)" if start >= size else None
