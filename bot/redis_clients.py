"""Redis clients that fail fast: CareBot's Redis is a cache and a message bus, never the
record, so a call to a dead or hung Redis must cost one short timeout, not a wait.

redis-py 8 retries a failed connection or timeout 10 times with backoff by default: seconds
per call to an unreachable Redis, inside a patient's turn. Here: no retries; the callers
rest after a failure instead (bot/memory/redis_store.py, bot/rate_limit.py,
bot/cluster_events.py).
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def fail_fast_redis(url: str, timeout_s: float | None) -> Redis:
    """A client for `url` whose calls give up after `timeout_s` (None: no read timeout, for
    a pub/sub listener that waits for messages), without retrying."""
    return Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s if timeout_s is not None else 2.0,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
