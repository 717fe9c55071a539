"""Test harness for leaderjob: real etcd servers and clusters, fault-injecting TCP proxies and
process bookkeeping.

Nothing here mocks etcd. Every process the harness starts runs in its own process group and is
stopped by that group's id (never by name), including when a test fails.

Modules:

* :mod:`tests.harness.binaries` -- locate ``etcd``/``etcdctl`` and read their versions.
* :mod:`tests.harness.etcd` -- :class:`EtcdMember`, :class:`EtcdCluster`, :class:`EtcdServer`,
  :func:`etcdctl`, :func:`free_port`.
* :mod:`tests.harness.proxy` -- :class:`FaultProxy` and :class:`MultiProxy`.
* :mod:`tests.harness.procs` -- :class:`ProcessGroup`, :class:`JsonLogProcess`,
  :func:`pid_alive`, :func:`wait_until`.

Scripts outside pytest (``bench/``) can use it by putting the repository root on ``sys.path``::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.harness.etcd import EtcdCluster

The main names are also importable from ``tests.harness`` itself.
"""

from .binaries import EtcdNotFoundError, etcd_version, find_etcd, find_etcdctl
from .etcd import (
    EtcdCluster,
    EtcdctlError,
    EtcdMember,
    EtcdServer,
    EtcdStartError,
    etcdctl,
    free_port,
)
from .procs import JsonLogProcess, ProcessGroup, pid_alive, wait_until
from .proxy import FaultMode, FaultProxy, MultiProxy

__all__ = [
    "EtcdCluster",
    "EtcdMember",
    "EtcdNotFoundError",
    "EtcdServer",
    "EtcdStartError",
    "EtcdctlError",
    "FaultMode",
    "FaultProxy",
    "JsonLogProcess",
    "MultiProxy",
    "ProcessGroup",
    "etcd_version",
    "etcdctl",
    "find_etcd",
    "find_etcdctl",
    "free_port",
    "pid_alive",
    "wait_until",
]
