"""Per-key limits, so no one caller takes the service from the others: requests in flight
(KEY_MAX_IN_FLIGHT), completion tokens a minute (KEY_TOKENS_PER_MINUTE, a bucket that a
request's `max_tokens` is taken from and its unused tokens returned to), and a UTC day's spend
on cloud models (KEY_DAILY_SPEND_USD). Each refusal is a 429 with Retry-After. A key is named
by its pseudonym; with no keys configured, every caller shares one."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.errors import KeyLimited
from app.settings import Settings


@dataclass
class _Bucket:
    tokens: float
    at: float  # when `tokens` was last brought up to date


@dataclass
class _Spend:
    day: dt.date
    usd: float = 0.0


class Quotas:
    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ):
        self._in_flight_limit = settings.key_max_in_flight
        self._per_minute = settings.key_tokens_per_minute
        self._daily_usd = settings.key_daily_spend_usd
        self._clock, self._now = clock, now
        self._in_flight: dict[str, int] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._spend: dict[str, _Spend] = {}

    def admit(self, key: str, max_tokens: int, remote: bool) -> Grant:
        """The request's share of its key's limits, or KeyLimited (429). Checked in order, and
        nothing is taken unless every limit admits it."""
        running = self._in_flight.get(key, 0)
        if self._in_flight_limit is not None and running >= self._in_flight_limit:
            raise KeyLimited(
                f"this key has {running} requests in flight, KEY_MAX_IN_FLIGHT allows "
                f"{self._in_flight_limit}; retry when one ends",
                "in_flight",
                1,
            )
        taken = self._take_tokens(key, max_tokens)
        if remote:
            self._check_spend(key, taken)
        self._in_flight[key] = running + 1
        return Grant(self, key, taken)

    def _take_tokens(self, key: str, max_tokens: int) -> int:
        if self._per_minute is None:
            return 0
        bucket = self._bucket(key)
        need = min(max_tokens, self._per_minute)  # a request larger than a minute's waits for all
        if bucket.tokens < need:
            rate = self._per_minute / 60
            raise KeyLimited(
                f"this key asked for {need} tokens with {int(bucket.tokens)} left of "
                f"KEY_TOKENS_PER_MINUTE={self._per_minute}",
                "tokens_per_minute",
                math.ceil((need - bucket.tokens) / rate),
            )
        bucket.tokens -= need
        return need

    def _check_spend(self, key: str, taken: int) -> None:
        if self._daily_usd is None:
            return
        now = self._now()
        spend = self._spend.get(key)
        if spend is None or spend.day != now.date():
            spend = self._spend[key] = _Spend(now.date())
        if spend.usd >= self._daily_usd:
            self._return_tokens(key, taken)
            midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
            raise KeyLimited(
                f"this key has spent ${spend.usd:.4f} on cloud models today, "
                f"KEY_DAILY_SPEND_USD={self._daily_usd:g}; the cap resets at 00:00 UTC",
                "daily_spend",
                max(1, math.ceil((midnight - now).total_seconds())),
            )

    def _bucket(self, key: str) -> _Bucket:
        assert self._per_minute is not None
        now = self._clock()
        bucket = self._buckets.setdefault(key, _Bucket(float(self._per_minute), now))
        rate = self._per_minute / 60
        bucket.tokens = min(float(self._per_minute), bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        return bucket

    def _return_tokens(self, key: str, tokens: int) -> None:
        if tokens and self._per_minute is not None:
            bucket = self._bucket(key)
            bucket.tokens = min(float(self._per_minute), bucket.tokens + tokens)

    def release(self, key: str, taken: int, used: int, cost_usd: float | None) -> None:
        """A request ended: it used `used` of the `taken` tokens and cost `cost_usd`."""
        self._in_flight[key] -= 1
        if not self._in_flight[key]:
            del self._in_flight[key]
        if self._per_minute is not None:  # more used than taken (a request over a minute's
            bucket = self._bucket(key)  # worth) is owed: the bucket goes below zero
            bucket.tokens = min(float(self._per_minute), bucket.tokens + taken - used)
        if cost_usd and self._daily_usd is not None and key in self._spend:
            self._spend[key].usd += cost_usd


class Grant:
    """A request's share, given back once when it ends: its place in flight, the tokens it
    did not use; what it cost is counted against the key's day."""

    __slots__ = ("_key", "_quotas", "_settled", "_taken")

    def __init__(self, quotas: Quotas, key: str, taken: int):
        self._quotas, self._key, self._taken = quotas, key, taken
        self._settled = False

    def settle(self, completion_tokens: int | None, cost_usd: float | None) -> None:
        """`completion_tokens` None: the request ended without its usage (the caller left, the
        upstream broke off) after tokens came: it keeps every token it took."""
        if not self._settled:
            self._settled = True
            used = self._taken if completion_tokens is None else completion_tokens
            self._quotas.release(self._key, self._taken, used, cost_usd)
