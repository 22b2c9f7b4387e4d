"""What one client may spend: connections and frames, per socket, identity and address.

Plain counters, no I/O: the listener and the WebSocket handler ask before
they let a connection or a frame in, and tell when a connection ends. A
limit per socket alone would let one visitor multiply it by opening more
sockets, so every frame also draws on a bucket shared by every connection
of its guest or agent (its *identity*) and one shared by its address.
"""

from __future__ import annotations

import time
from collections.abc import Hashable


class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst`` (PROTOCOL R9)."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class SharedBuckets:
    """One :class:`TokenBucket` per key, kept while at least one holder uses it."""

    def __init__(self, rate: float):
        self.rate = rate
        self._buckets: dict[Hashable, tuple[TokenBucket, int]] = {}

    def acquire(self, key: Hashable) -> TokenBucket:
        """The key's bucket, created full for the first holder; pair with :meth:`release`."""
        bucket, holders = self._buckets.get(key) or (TokenBucket(self.rate, 2 * self.rate), 0)
        self._buckets[key] = (bucket, holders + 1)
        return bucket

    def release(self, key: Hashable) -> None:
        bucket, holders = self._buckets[key]
        if holders > 1:
            self._buckets[key] = (bucket, holders - 1)
        else:
            del self._buckets[key]


class ConnectionCounter:
    """Open connections in all and per address, against ``[server]`` limits."""

    def __init__(self, total: int, per_address: int):
        self.total_limit = total
        self.per_address_limit = per_address
        self.total = 0
        self._by_address: dict[str, int] = {}

    def admit(self, address: str | None) -> bool:
        """Count a new connection, or return False (counting nothing) when over a limit.

        ``address`` None counts toward the total only (the peer is a trusted proxy).
        """
        if self.total >= self.total_limit:
            return False
        if address is not None:
            count = self._by_address.get(address, 0)
            if count >= self.per_address_limit:
                return False
            self._by_address[address] = count + 1
        self.total += 1
        return True

    def leave(self, address: str | None) -> None:
        """Uncount a connection that :meth:`admit` let in."""
        self.total -= 1
        if address is not None:
            count = self._by_address.pop(address) - 1
            if count:
                self._by_address[address] = count
