"""Send stage: deliver one batch to the track API, whatever the network and the API do.

What an answer means (see docs/api-contract.md, "Responses and limits"):

    answer                                       what the sender does
    -------------------------------------------  ------------------------------------------
    2xx, any body (201 normally)                 delivered: on_delivered(batch, status)
    408, 429, 5xx, timeout, connection error,    retry after backoff with full jitter, or
      400 "Can't create a collection for         Retry-After if longer; 429 (and, when the
      auto-event" (transient)                    limit is adaptive, 408, 5xx, timeouts and
                                                 connection errors) halves the requests in
                                                 flight (pacing.py). Past max_retry_time:
                                                 SendError
    413                                          split in half, send both; one event: reject
    401, 403                                     SendError at once: key/org/project/source
    404, 405, 3xx (redirects are not followed)   SendError at once: the URL is wrong
    2xx with a web page (Content-Type text/html) SendError at once: not the API answering
    other 4xx (400, 422, ...)                    bisect; a single refused event: reject

Retries are bounded per request (a half of a split batch gets its own budget). Exceptions
that are not about the exchange (bugs, a failing callback, cancellation) propagate untouched.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import httpx
import numpy as np
import orjson

from uploader.batches import Batch, encode_body, split_batch
from uploader.config import DEFAULT_MAX_RETRY_TIME
from uploader.errors import ConfigError, SendError
from uploader.events import Events
from uploader.pacing import AdaptiveConcurrency
from uploader.target import Credentials, Target
from uploader.transport import default_transport
from uploader.version import __version__

# First backoff ceiling: a blip is usually over within half a second.
DEFAULT_BASE_DELAY = 0.5
# Backoff ceiling: beyond 30 s waiting stops helping and only slows recovery.
DEFAULT_MAX_DELAY = 30.0
# Per request: covers a 5,000-event body and the slow first use of a new event name.
DEFAULT_TIMEOUT = 60.0
# Characters of an API message kept in a reject reason or an error: any message seen fits,
# an echoed payload does not fill the rejects file.
MESSAGE_LIMIT = 300
# Characters of an error body kept on a SendError: bounded for the same reason.
BODY_LIMIT = 2_000
TOO_LARGE = "the API refused this event as too large (413)"
USER_AGENT = f"uploader/{__version__}"

# Failures in which the request may not have arrived, or arrived and got no answer. Other
# transport errors (unsupported scheme, a proxy refusing, a request httpx itself refuses) are
# configuration errors or bugs.
_RETRIED_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

OnDelivered = Callable[[Batch, int], Awaitable[None]]
OnRejected = Callable[[Events, str], Awaitable[None]]


class Uniform(Protocol):
    def uniform(self, a: float, b: float, /) -> float: ...


@dataclass(frozen=True)
class RetryPolicy:
    max_retry_time: float = DEFAULT_MAX_RETRY_TIME
    base_delay: float = DEFAULT_BASE_DELAY
    max_delay: float = DEFAULT_MAX_DELAY
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("max_retry_time", "base_delay", "max_delay", "timeout"):
            value = getattr(self, name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a number of seconds above 0; got {value!r}")

    def delay(self, retry: int, retry_after: float | None, rng: Uniform) -> float:
        """Wait before retry number `retry` (0 for the first): full jitter, but never less
        than what the server asked for."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(retry, 62))
        jitter = rng.uniform(0.0, ceiling)
        return jitter if retry_after is None else max(jitter, retry_after)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date, which is
    compared with `now`, epoch seconds). None when absent or unreadable."""
    try:
        seconds = float(value or "")
    except ValueError:
        when = _http_date(value)
        seconds = math.nan if when is None else when - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _http_date(value: str | None) -> float | None:
    """Epoch seconds of an HTTP date (naive dates are read as UTC), None if unreadable."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


@dataclass
class SendStats:
    """Counts since the sender started, for the run report."""

    requests: int = 0
    retries: int = 0
    splits: int = 0
    events_delivered: int = 0
    events_rejected: int = 0
    status_counts: Counter[int] = field(default_factory=Counter)
    error_counts: Counter[str] = field(default_factory=Counter)  # by exception name


class Sender:
    """Posts batches to one target through one keep-alive client. Use `async with`."""

    def __init__(
        self,
        target: Target,
        credentials: Credentials,
        *,
        policy: RetryPolicy | None = None,
        limiter: AdaptiveConcurrency | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: Uniform | None = None,
    ) -> None:
        self.target = target
        self.credentials = credentials
        self.policy = policy or RetryPolicy()
        self.limiter = limiter or AdaptiveConcurrency()
        self.stats = SendStats()
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng: Uniform = rng or random.Random()
        # Requests go straight to the transport: no client in between (redirects are not
        # followed, as before; the key is only ever in this header).
        self._url = httpx.URL(target.track_url)
        self._transport = transport or default_transport(self._url, self.limiter.max_concurrency)
        self._headers = [
            ("Authorization", credentials.authorization),
            ("Content-Type", "application/json"),
            ("User-Agent", USER_AGENT),
            ("X-Intempt-Lib", USER_AGENT),
        ]
        self._timeouts = httpx.Timeout(self.policy.timeout).as_dict()

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def send_batch(
        self, batch: Batch, on_delivered: OnDelivered, on_rejected: OnRejected
    ) -> None:
        """Deliver `batch`, or the parts of it the API accepts, rejecting the rest. Raises
        SendError when the run must stop: auth failure, wrong URL, retries exhausted."""
        response = await self._post(batch)
        status = response.status_code
        if response.is_success and not _is_web_page(response):
            self.stats.events_delivered += len(batch)
            await on_delivered(batch, status)
            return
        message = self._message(response)
        if response.is_success:
            # A login page, a captive proxy or a web front end, not the API: nothing stored.
            raise SendError(
                f"{self.target.track_url} answered {status} with a web page ({message}), not "
                "the track API's answer, so nothing was stored; check --base-url (a login "
                "page, a proxy or a web site answered)",
                status=status,
                body=message,
            )
        if 300 <= status < 400:
            where = self._redact(response.headers.get("Location", "nowhere said"))
            raise SendError(
                f"the API answered {status}, a redirect to {where}: the uploader does not "
                "follow redirects (the events would go to an address nobody checked); check "
                "--base-url",
                status=status,
                body=message,
            )
        if status in (401, 403):
            raise SendError(
                f"the API refused the credentials ({status}: {message}): the API key is wrong, "
                f"or has no access to {self.target.describe()}; check INTEMPT_API_KEY or "
                "--api-key-file, --org, --project and --source",
                status=status,
                body=message,
            )
        if status in (404, 405):
            # The address, not the data: bisecting would reject every event one by one.
            raise SendError(
                f"the API has no track endpoint at {self.target.track_url} ({status}: "
                f"{message}); check --base-url, --org, --project and --source",
                status=status,
                body=message,
            )
        if len(batch) <= 1:
            reason = (
                TOO_LARGE if status == 413 else f"the API refused this event ({status}): {message}"
            )
            self.stats.events_rejected += 1
            await on_rejected(batch.events, reason)
            return
        # 413: halves until they fit. Other 4xx: halves until the refused items are alone.
        self.stats.splits += 1
        for half in split_batch(batch):
            await self.send_batch(half, on_delivered, on_rejected)

    async def _post(self, batch: Batch) -> httpx.Response:
        """Post until an answer that is not worth retrying (2xx or a lasting refusal)."""
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            async with self.limiter as generation:
                self.stats.requests += 1
                sent_at = self._clock()
                try:
                    response = await self._exchange(batch.body)
                except _RETRIED_ERRORS as exc:
                    self.stats.error_counts[type(exc).__name__] += 1
                    detail = " ".join(str(exc).split())
                    failure = SendError(self._redact(f"{type(exc).__name__}: {detail}"))
                    if self.limiter.adaptive:  # the API or the way to it is overloaded
                        self.limiter.throttled(generation)
                else:
                    self.stats.status_counts[response.status_code] += 1
                    if response.is_success:
                        self.limiter.succeeded(self._clock() - sent_at, len(batch))
                        return response
                    failure = self._failure(response)
                    if not failure.retryable:
                        return response
                    status = response.status_code
                    overload = status in (408, 429) or status >= 500
                    if status == 429 or (overload and self.limiter.adaptive):
                        self.limiter.throttled(generation)
            delay = self.policy.delay(attempt - 1, failure.retry_after, self._rng)
            elapsed = self._clock() - started
            if elapsed + delay > self.policy.max_retry_time:
                asked = failure.retry_after
                wait = f" (the API asked to wait {asked:.0f} s)" if asked else ""
                raise SendError(
                    f"gave up on a batch of {len(batch)} events: retries exhausted after "
                    f"{attempt} attempt{'' if attempt == 1 else 's'} over {elapsed:.0f} s (max "
                    "retry time "
                    f"{self.policy.max_retry_time:g} s); last: {failure}{wait}",
                    status=failure.status,
                    body=failure.body,
                    retry_after=failure.retry_after,
                )
            self.stats.retries += 1
            await self._sleep(delay)

    async def _exchange(self, body: bytes) -> httpx.Response:
        request = httpx.Request(
            "POST",
            self._url,
            headers=self._headers,
            content=body,
            extensions={"timeout": self._timeouts},
        )
        response = await self._transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    def _failure(self, response: httpx.Response) -> SendError:
        """A refusal as a SendError; SendError.retryable is the one place that says which
        refusals are transient."""
        body = self._redact(response.text, BODY_LIMIT)
        failure = SendError(
            f"{response.status_code} {self._message(response)}",
            status=response.status_code,
            body=body,
        )
        # An HTTP-date is measured against the server's own clock when it sent one.
        now = _http_date(response.headers.get("Date"))
        now = self._wall_clock() if now is None else now
        failure.retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
        return failure

    def _message(self, response: httpx.Response) -> str:
        """A readable, short, key-free message from an error answer."""
        text = response.text
        try:
            parsed = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            for name in ("error", "message", "detail", "errors"):
                value = parsed.get(name)
                if value:
                    text = value if isinstance(value, str) else orjson.dumps(value).decode()
                    break
        text = " ".join(text.split()) or f"HTTP {response.status_code} with an empty body"
        return self._redact(text)

    def _redact(self, text: str, limit: int = MESSAGE_LIMIT) -> str:
        # Redact before cutting: a cut through the key would leave a piece nothing matches.
        text = self.credentials.redact(text).strip(" :")
        return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_web_page(response: httpx.Response) -> bool:
    return "text/html" in response.headers.get("Content-Type", "").lower()


class WarmUp:
    """The first event of each event name goes alone, before the fan-out: the API is slow
    and flaky while it creates a new event's schema, so one small request per new name
    takes that hit instead of a full batch (and its retries)."""

    def __init__(self) -> None:
        self.warmed: set[int] = set()  # event name codes
        self._lock = asyncio.Lock()

    async def send(self, batch: Batch, send: Callable[[Batch], Awaitable[None]]) -> None:
        if self.warmed.issuperset(np.unique(batch.events.codes).tolist()):
            await send(batch)
            return
        async with self._lock:  # the other senders wait until the names exist
            codes = batch.events.codes
            rest = np.ones(len(codes), dtype=bool)
            for at in np.unique(codes, return_index=True)[1].tolist():  # first of each name
                code = int(codes[at])
                if code in self.warmed:
                    continue
                first = batch.events.slice(at, at + 1)
                await send(Batch(batch.seq, first, encode_body(first)))
                self.warmed.add(code)
                rest[at] = False
        if rest.all():
            await send(batch)
        elif rest.any():
            others = batch.events.take(np.flatnonzero(rest))
            await send(Batch(batch.seq, others, encode_body(others)))
