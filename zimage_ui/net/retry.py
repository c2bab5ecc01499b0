"""When a request may be tried again: a submit starts a paid job, so only when the provider
certainly did not start work; a fetch on timeouts, network errors, 429 and any 5xx."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # tries in all, the first included
    base_s: float = 0.5  # backoff: base, 2 x base, 4 x base ... when there is no Retry-After
    max_wait_s: float = 30.0  # cap on any single wait, Retry-After included


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date."""
    if not value or not value.strip():
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def backoff_s(policy: RetryPolicy, attempt: int, retry_after: float | None) -> float:
    """Wait before try `attempt + 1`: Retry-After where given, else exponential; both capped."""
    wanted = retry_after if retry_after is not None else policy.base_s * 2 ** (attempt - 1)
    return min(wanted, policy.max_wait_s)


class RetryableStatus(Exception):
    """A response whose status may deserve another try (429 or 5xx)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.status = response.status_code
        self.retry_after = parse_retry_after(response.headers.get("retry-after"))


def submit_retryable(exc: BaseException) -> bool:
    """A POST that starts a paid job is retried only where no work can have started."""
    if isinstance(exc, RetryableStatus):
        return exc.status in {429, 503}
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))


def fetch_retryable(exc: BaseException) -> bool:
    """A GET is safe to repeat: retry timeouts, network errors, 429 and any 5xx."""
    if isinstance(exc, RetryableStatus):
        return exc.status == 429 or exc.status >= 500
    return isinstance(exc, httpx.TransportError)
