"""How long a skipped copy waits before its watch looks at the job again."""

from __future__ import annotations

from comfyfarm.tasks.settings import Settings
from comfyfarm.worker.copies import MAX_WATCH_SECONDS, watch_countdown


def test_a_watch_waits_a_minute_when_the_visibility_timeout_is_long() -> None:
    assert watch_countdown(Settings(visibility_timeout=10_000, lease_seconds=30)) == 60


def test_a_watch_outlasts_two_lease_ttls() -> None:
    """By the time it looks, the lease of a holder that died has expired."""
    assert watch_countdown(Settings(visibility_timeout=10_000, lease_seconds=45)) == 90


def test_a_watch_is_due_before_redis_would_re_deliver_it() -> None:
    """A waiting watch is itself unacknowledged: it must fire within half the visibility
    timeout, or Redis would hand out another copy of it."""
    settings = Settings(
        max_job_seconds=10, visibility_timeout=16, lease_seconds=2, max_retry_delay=8
    )
    assert watch_countdown(settings) == 8 < MAX_WATCH_SECONDS
