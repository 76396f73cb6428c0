"""One aiohttp session (connection pool) for the HTTP-based CRM adapters, and the one place
where transport failures become the contract's typed errors.

Every adapter owns a `JsonHttp`. Give all of them the same `aiohttp.ClientSession` (made
with `new_session()`) to share one connection pool; without one, a `JsonHttp` opens its
own session on first use and closes it in `close()`.

What is mapped here, for every adapter alike:
- no answer within the adapter's `timeout` -> `CrmTimeout` (a `CrmUnavailable`);
- connection refused/reset, DNS, TLS -> `CrmUnavailable`;
- a body that is not JSON -> `CrmBadResponse`.
HTTP error statuses are left to the adapter, because each CRM puts its error in a
different place (Odoo: HTTP 200 with an `error` member; Bitrix24: 4xx/5xx with `error`).

Log lines name the adapter and a caller-given label (`what`), never the URL: a Bitrix24
webhook URL carries its secret in the path.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar, Concatenate, ParamSpec, Self, TypeVar

import aiohttp
from pydantic import BaseModel

from crm_adapters.contract import CrmAdapter, FinishedCall
from crm_adapters.errors import CrmBadResponse, CrmError, CrmTimeout, CrmUnavailable

if TYPE_CHECKING:
    from crm_adapters.settings import AdapterConfig, CrmSettings

log = logging.getLogger("callbridge.crm")

DEFAULT_TIMEOUT = 3.0  # seconds; a caller's card is useless after a few rings
USER_AGENT = "callbridge/0.1 (+aiohttp)"
_OUTCOMES = {"answered": "answered", "abandoned": "caller hung up", "unanswered": "not answered",
             "incomplete": "incomplete", "busy": "busy", "failed": "failed"}


def new_session(*, pool_size: int = 50, per_host: int = 10) -> aiohttp.ClientSession:
    """A session to share between adapters: bounded pool, cached DNS, no cookies kept.

    Must be called inside the running event loop; close it at shutdown.
    """
    connector = aiohttp.TCPConnector(limit=pool_size, limit_per_host=per_host, ttl_dns_cache=300)
    # DummyCookieJar: CRM APIs here are stateless (keys/webhooks); a jar would mix sessions.
    return aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), headers={"User-Agent": USER_AGENT}
    )


@dataclass(frozen=True)
class JsonReply:
    status: int
    body: Any  # parsed JSON; None for an empty body
    headers: dict[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"))


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def log_failure(adapter: str, what: str, error: CrmError) -> CrmError:
    """One warning line per CRM failure; returns the error so callers can `raise log_failure(...)`."""
    log.warning("crm %s: %s failed: %s", adapter, what, error)
    return error


class JsonHttp:
    """JSON over HTTP with a per-request timeout and typed errors."""

    def __init__(self, adapter: str, *, timeout: float = DEFAULT_TIMEOUT,
                 session: aiohttp.ClientSession | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.adapter = adapter
        self.timeout = timeout
        self.headers = dict(headers or {})
        self._session = session
        self._owns_session = session is None

    async def open(self) -> None:
        if self._session is None or self._session.closed:
            self._session = new_session()
            self._owns_session = True

    async def close(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        if self._owns_session:
            self._session = None

    async def request(self, method: str, url: str, *, what: str, json_body: Any = None,
                      params: dict[str, str] | None = None,
                      headers: dict[str, str] | None = None) -> JsonReply:
        """Send one request; returns the parsed reply whatever its status.

        Raises CrmTimeout / CrmUnavailable / CrmBadResponse (already logged).
        """
        await self.open()
        assert self._session is not None
        merged = {**self.headers, **(headers or {}), "Accept": "application/json"}
        try:
            async with self._session.request(
                method, url, json=json_body, params=params, headers=merged,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                raw = await response.read()
                status, resp_headers = response.status, dict(response.headers)
        except TimeoutError:
            raise log_failure(self.adapter, what, CrmTimeout(
                f"no answer within {self.timeout:g}s", adapter=self.adapter)) from None
        except aiohttp.ClientError as exc:
            raise log_failure(self.adapter, what, CrmUnavailable(
                f"{type(exc).__name__}: {exc}", adapter=self.adapter)) from None
        return JsonReply(status, self._decode(raw, status, what), resp_headers)

    def _decode(self, raw: bytes, status: int, what: str) -> Any:
        if not raw.strip():
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            if not 200 <= status < 300:
                return None  # a proxy's HTML error page: the status says what happened
            snippet = raw[:80].decode("utf-8", "replace")
            raise log_failure(self.adapter, what, CrmBadResponse(
                f"malformed JSON: {snippet!r}", adapter=self.adapter, status=status)) from None


class HttpCrmAdapter(CrmAdapter):
    """What the HTTP adapters share: a `JsonHttp`, open/close, building from `[[crm.adapters]]`."""

    config_model: ClassVar[type[BaseModel]]
    http: JsonHttp

    @property  # type: ignore[override]
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        # The lookup service renames adapters after building them; log lines must follow.
        self._name = value
        if "http" in self.__dict__:
            self.http.adapter = value

    async def open(self) -> None:
        await self.http.open()

    async def close(self) -> None:
        await self.http.close()

    @classmethod
    def from_config(cls, config: AdapterConfig, settings: CrmSettings, store: object = None) -> Self:
        """`type = "crm_adapters.odoo:OdooAdapter"` (etc.) in `[[crm.adapters]]`; `options` are the
        adapter's config fields. Name and default region come from the CRM settings."""
        options: dict[str, Any] = {"name": config.display_name, "default_region": settings.default_region,
                                   "timeout": min(DEFAULT_TIMEOUT, settings.request_timeout_seconds),
                                   **config.options}
        return cls(cls.config_model.model_validate(options))  # type: ignore[call-arg]


P = ParamSpec("P")
R = TypeVar("R")
A = TypeVar("A", bound=CrmAdapter)


def bad_data_is_bad_response(
    method: Callable[Concatenate[A, P], Awaitable[R]],
) -> Callable[Concatenate[A, P], Awaitable[R]]:
    """A reply of an unexpected shape that slipped past the checks (a KeyError deep in the
    mapping, a pydantic ValidationError) becomes CrmBadResponse, not an adapter crash."""

    @functools.wraps(method)
    async def guarded(self: A, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(self, *args, **kwargs)
        except CrmError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            log.warning("crm %s: %s: unexpected data", self.name, method.__name__, exc_info=True)
            raise CrmBadResponse(f"unexpected data ({type(exc).__name__}: {exc})",
                                 adapter=self.name) from exc

    return guarded


def call_note(call: FinishedCall) -> str:
    """A finished call as one line of text for a CRM note/comment.

    Ends with `[call <call_id>]`: the Odoo adapter finds its own notes by that marker.
    """
    direction = "Incoming" if call.direction == "inbound" else "Outgoing"
    minutes, seconds = divmod(round(call.duration_seconds), 60)
    parts = [f"{direction} call {call.number}, {_OUTCOMES[call.outcome]}"]
    if call.duration_seconds:
        parts.append(f"talk {minutes}:{seconds:02d}")
    if call.operator:
        parts.append(f"operator {call.operator}")
    parts.append(f"{call.started_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
    text = ", ".join(parts) + "."
    if call.note:
        text += f" {call.note}"
    if call.recording_url:
        text += f" Recording: {call.recording_url}"
    return f"{text} [call {call.call_id}]"
