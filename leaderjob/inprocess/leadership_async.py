"""asyncio's side of in-process leadership: entering, leaving and waiting without a thread of
the event loop's pool, and cancellation-safe like ``asyncio.Lock``.

Owns: :class:`AsyncLeadership`, a part of :class:`~leaderjob.inprocess.leadership.Leadership`
handed its :class:`~leaderjob.inprocess.leadership_hold.Hold`. The driver thread signals the loop
(:class:`~leaderjob.inprocess.leadership_lifecycle.Signal`); a wait cancelled at any ``await``
withdraws the candidacy (resign, revoke) even if etcd had already made it leader (SAFETY.md
§5b). It must not know the election rules.
"""

from __future__ import annotations

import asyncio

from leaderjob.inprocess.leadership_hold import Hold

__all__ = ["AsyncLeadership"]


class AsyncLeadership:
    def __init__(self, hold: Hold) -> None:
        self.hold = hold

    async def acquire(self, timeout: float | None) -> bool:
        """Lead within ``timeout`` seconds (None: as long as it takes), or False."""
        hold = self.hold
        driver = hold.begin()
        try:
            try:
                async with asyncio.timeout(timeout):
                    await driver.settled.wait_async()
            except TimeoutError:
                await driver.answered.wait_async()  # at least one look, as try_acquire(0)
        except BaseException:
            # Cancelled (or interrupted) at any await: withdraw at once, whether or not etcd
            # already made us leader; the driver thread resigns and revokes by itself.
            hold.leave_soon()
            raise
        ended = hold.ended

        def release() -> None:
            hold.leave_soon()

        leading = hold.outcome(driver, release)
        if not leading:
            await ended.wait_async()
        return leading

    async def release(self) -> None:
        """Leave, and wait for the revoke without a pool thread."""
        ended = self.hold.ended
        self.hold.leave_soon()
        await ended.wait_async()

    async def wait_lost(self) -> str | None:
        hold = self.hold
        await hold.lost.wait_async()
        d = hold.driver
        return None if d is None or hold.left else d.lost_reason
