"""What an application writes, checked by ``mypy --strict`` (tests/unit/test_typing.py): the
public names type as what they are, not as ``object``."""

from __future__ import annotations

import asyncio

import leaderjob
from leaderjob import Leader, Leadership, Singleton, SlotRun


def work(lead: Leadership) -> int | None:
    with lead:
        if lead.valid():
            lead.fenced_put("/app/cursor", "1")
            lead.proclaim("serving")
        who: Leader | None = lead.leader()
        return who.token if who is not None else lead.token


async def async_work(lead: Leadership) -> str | None:
    async with lead:
        await lead.fenced_put_async("/app/cursor", b"2")
    return await lead.wait_lost()


@leaderjob.singleton(election="report", schedule="0 6 * * *", endpoints=["etcd-0:2379"])
def report(run: SlotRun) -> None:
    if run.valid():
        print(run.token, run.remaining())


def errors() -> None:
    try:
        Leadership("app").acquire(timeout=None)
    except leaderjob.LeadershipTimeout:
        pass
    except leaderjob.StaleToken as exc:
        print(exc.token)
    except leaderjob.Error:
        raise


single: Singleton = report
single.start().stop(timeout=5.0)
asyncio.run(async_work(Leadership("app")))
