"""leaderjob: run a scheduled command exactly once across many replicas.

Each replica campaigns for leadership on an etcd lease; only the leader runs the command, and it
hands the command a fencing token (the create revision of its election key). The safety model is
in docs/safety.md.

This module stays import-light on purpose: the per-run watchdog process imports nothing from it.
"""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Lazy, so that `import leaderjob` stays cheap (the daemon and the watchdog import no etcd
    # client through it): `from leaderjob import Leadership` loads the module on first use.
    if name == "Leadership":
        from leaderjob.leadership import Leadership

        return Leadership
    if name == "singleton":
        import leaderjob.singleton as module  # a callable module: @leaderjob.singleton(...)

        return module
    raise AttributeError(f"module 'leaderjob' has no attribute {name!r}")
