"""Fixtures of the fault suite: a :class:`World` on the module's 3-member etcd cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.world import World
from tests.harness.etcd import EtcdCluster
from tests.harness.procs import ProcessGroup


@pytest.fixture
def make_world(
    etcd_cluster: EtcdCluster, procs: ProcessGroup, prefix: str, tmp_path: Path
) -> Iterator[Callable[..., World]]:
    """``make_world(**options)`` builds and starts a :class:`World` (see its arguments)."""
    made: list[World] = []

    def make(**options: Any) -> World:
        world = World(etcd_cluster, procs, tmp_path, prefix, **options)
        made.append(world)
        return world.start()

    yield make
    for world in made:
        world.close()
