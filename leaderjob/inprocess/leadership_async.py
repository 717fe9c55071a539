"""asyncio's side of in-process leadership: entering, leaving and waiting without a thread of
the event loop's pool, and cancellation-safe like ``asyncio.Lock``.

Owns: :class:`AsyncLeadership`, a mixin of :class:`~leaderjob.inprocess.leadership.Leadership`. The
driver thread signals the loop (:class:`~leaderjob.inprocess.leadership_lifecycle.Signal`); a wait
cancelled at any ``await`` withdraws the candidacy (resign, revoke) even if etcd had already made it
leader (SAFETY.md §5b). It must not know the election rules.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING, cast

from leaderjob.inprocess.leadership_options import DEFAULT, Default

if TYPE_CHECKING:
    from leaderjob.inprocess.leadership import Leadership

__all__ = ["AsyncLeadership"]


class AsyncLeadership:
    """Mixed into :class:`~leaderjob.inprocess.leadership.Leadership`."""

    async def acquire_async(self, timeout: float | Default | None = DEFAULT) -> None:
        """:meth:`acquire` for asyncio. Holds no thread of the event loop's pool while waiting,
        and is cancellation-safe like ``asyncio.Lock``: a cancelled wait withdraws the candidacy
        (resign, revoke) even if etcd had already made it leader."""
        me = cast("Leadership", self)
        wait = me._timeout(timeout)
        if not await me._acquire_async(wait):
            raise me._timed_out(wait)

    async def try_acquire_async(self, timeout: float) -> bool:
        """:meth:`try_acquire` for asyncio (cancellation-safe, no pool thread)."""
        me = cast("Leadership", self)
        return await me._acquire_async(timeout)

    async def release_async(self) -> None:
        """:meth:`release` for asyncio: waits for the revoke without a pool thread."""
        me = cast("Leadership", self)
        ended = me._ended
        me._leave_soon()
        await ended.wait_async()

    async def wait_lost(self) -> str | None:
        """Wait (from a coroutine, holding no thread) until this tenure ends; the reason
        (``None`` when it was left on purpose)."""
        me = cast("Leadership", self)
        await me.lost.wait_async()
        d = me._driver
        return None if d is None or me._left else d.lost_reason

    async def _acquire_async(self, timeout: float | None) -> bool:
        me = cast("Leadership", self)
        driver = me._begin()
        try:
            try:
                async with asyncio.timeout(timeout):
                    await driver.settled.wait_async()
            except TimeoutError:
                await driver.answered.wait_async()  # at least one look, as try_acquire(0)
        except BaseException:
            # Cancelled (or interrupted) at any await: withdraw at once, whether or not etcd
            # already made us leader; the driver thread resigns and revokes by itself.
            me._leave_soon()
            raise
        ended = me._ended

        def release() -> None:
            me._leave_soon()

        leading = me._outcome(driver, release)
        if not leading:
            await ended.wait_async()
        return leading

    async def __aenter__(self) -> Leadership:
        me = cast("Leadership", self)
        await me.acquire_async()
        return me

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        me = cast("Leadership", self)
        await me.release_async()
