"""leaderjob: run a scheduled command exactly once across many replicas.

Each replica campaigns for leadership on an etcd lease; only the leader runs the command, and it
hands the command a fencing token (the create revision of its election key). The safety model is
in docs/safety.md.

This module stays import-light on purpose: the per-run watchdog process imports nothing from it.
"""

__version__ = "0.1.0"
