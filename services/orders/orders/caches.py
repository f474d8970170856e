"""Short-lived, per-process memory of other services' answers, to skip asking them again.

- Shipping quotes: `GET /orders/{id}/shipping/methods` asks shipping for the prices that apply to
  the order; the `PUT .../shipping/cost` that usually follows within seconds chooses one of them.
  The quote is kept for that order and reused while the order still has what it was asked with
  (address, sub-total, weight, currency) and for `QUOTE_TTL` at most: the price the customer saw
  is the price charged, as with any quote. Otherwise the choice is asked for again.
- Payment resolutions: `ResolvePayment` (the payment type of a checkout and whether its token may
  be charged) is the same answer for the same question while payments' configuration stands.
  Successful answers are kept for `PAYMENT_TTL`; refusals are never kept. Whether a token can
  really be charged is decided by the charge itself (a declined charge fails the attempt).

Both are bounded (oldest entries go first) and lost on restart; another replica simply asks.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Generic, TypeVar

from aiohttp import web

from shared.contracts import ResolvePaymentReply, ShippingPriceView

V = TypeVar("V")

QUOTE_TTL = 60.0
PAYMENT_TTL = 30.0


class TtlCache(Generic[V]):
    def __init__(self, ttl: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()

    def get(self, key: Hashable) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires < self.clock():
            del self._entries[key]
            return None
        return value

    def put(self, key: Hashable, value: V) -> None:
        now = self.clock()
        self._entries[key] = (now + self.ttl, value)
        self._entries.move_to_end(key)
        # One TTL for all: the oldest entries are the first to expire, so they go first.
        while self._entries and (len(self._entries) > self.max_entries or next(iter(self._entries.values()))[0] < now):
            self._entries.popitem(last=False)

    def pop(self, key: Hashable) -> None:
        self._entries.pop(key, None)


class Caches:
    def __init__(self) -> None:
        # order id -> (what the quote was asked with, the prices)
        self.quotes: TtlCache[tuple[object, list[ShippingPriceView]]] = TtlCache(QUOTE_TTL)
        # (payment_type_id, payment_type, payment_token) -> the reply
        self.payments: TtlCache[ResolvePaymentReply] = TtlCache(PAYMENT_TTL)


CACHES = web.AppKey("caches", Caches)


async def caches(app: web.Application) -> AsyncIterator[None]:
    """The app's caches, for `create_service_app(resources=...)`."""
    app[CACHES] = Caches()
    yield
