"""Typed errors every CRM adapter raises (and nothing else escapes an adapter).

Adapters translate their transport's failures into these; the lookup service logs them
as one line each and never lets them crash a call. `counts_for_breaker` says whether a
failure says something about the CRM's health (outage, auth, garbage) rather than about
the one request (a rejected contact, an unsupported operation).
"""

from __future__ import annotations


class CrmError(Exception):
    """Base of every CRM failure. `adapter` names the adapter, `status` the HTTP status if any."""

    counts_for_breaker: bool = True
    kind: str = "error"  # short word for log lines and the admin's `lookup` output

    def __init__(self, message: str, *, adapter: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.adapter = adapter
        self.status = status

    def __str__(self) -> str:
        where = f"[{self.adapter}] " if self.adapter else ""
        code = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{where}{self.kind}: {self.message}{code}"


class CrmAuthError(CrmError):
    """Credentials rejected or expired (401/403, bad API key, revoked token)."""

    kind = "auth failure"


class CrmUnavailable(CrmError):
    """The CRM cannot be reached or answers with a server error (connect error, 5xx)."""

    kind = "unavailable"


class CrmTimeout(CrmUnavailable):
    """No answer in time."""

    kind = "timeout"


class CrmCircuitOpen(CrmUnavailable):
    """Not asked: the circuit breaker is open after repeated failures (raised by the lookup service)."""

    kind = "circuit open"


class CrmRateLimited(CrmUnavailable):
    """Too many requests (429). `retry_after` seconds if the CRM said so."""

    kind = "rate limited"

    def __init__(self, message: str, *, adapter: str | None = None, status: int | None = 429,
                 retry_after: float | None = None) -> None:
        super().__init__(message, adapter=adapter, status=status)
        self.retry_after = retry_after


class CrmBadResponse(CrmError):
    """The CRM answered something we cannot use (malformed JSON, unexpected shape)."""

    kind = "bad response"


class CrmRejected(CrmError):
    """The CRM refused this request's data (400/409/422: duplicate, validation). Not an outage."""

    kind = "rejected"
    counts_for_breaker = False


class CrmNotSupported(CrmError):
    """The adapter cannot do this (e.g. a read-only CRM asked to create a contact)."""

    kind = "not supported"
    counts_for_breaker = False


def error_for_status(status: int, message: str, *, adapter: str | None = None,
                     retry_after: float | None = None) -> CrmError:
    """The typed error for an HTTP error status, for HTTP-based adapters."""
    if status in (401, 403):
        return CrmAuthError(message, adapter=adapter, status=status)
    if status == 429:
        return CrmRateLimited(message, adapter=adapter, status=status, retry_after=retry_after)
    if status in (408, 504):
        return CrmTimeout(message, adapter=adapter, status=status)
    if status >= 500:
        return CrmUnavailable(message, adapter=adapter, status=status)
    if status in (400, 404, 409, 422):
        return CrmRejected(message, adapter=adapter, status=status)
    return CrmBadResponse(message, adapter=adapter, status=status)
