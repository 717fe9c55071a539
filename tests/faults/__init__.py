"""Proof under faults: a Jepsen-style harness for leaderjob.

* :mod:`tests.faults.writer_job` -- the job: writes to the fenced store with its token.
* :mod:`tests.faults.world` -- a 3-member etcd cluster, a fenced store and N daemons ("pods"),
  each behind its own fault proxies; fault injection; everything recorded on one clock. With
  ``jobs=N`` each pod runs a jobs file of N jobs, and every job is judged on its own.
* :mod:`tests.faults.recorder` -- stamps every event with ``time.monotonic()``.
* :mod:`tests.faults.checker` -- reads a history and checks S1-S3, S5, S6, L1/L2 statistics.
* :mod:`tests.faults.nemesis` -- the randomised fault mix behind ``make soak``.

Every clock in a history is ``CLOCK_MONOTONIC`` of this machine: the store log's ``mono``, the
job journal's ``t`` and the recorder's stamps are read from the same clock in their own
processes. Daemon log lines are stamped when the recorder reads them (they carry wall-clock
times, which the clock-step scenario deliberately falsifies).
"""
