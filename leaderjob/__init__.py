"""leaderjob: run a scheduled command exactly once across many replicas.

Each replica campaigns for leadership on an etcd lease; only the leader runs the command, and it
hands the command a fencing token (the create revision of its election key). The safety model is
in docs/safety.md.

This module stays import-light on purpose: the guardian process imports nothing from it.
That is why ``__version__`` is looked up on first use (importlib.metadata alone costs tens of
milliseconds at start-up, on every run).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers see; at run time each is loaded on first use
    from leaderjob.errors import Error as Error
    from leaderjob.fencing import FencingError as FencingError
    from leaderjob.fencing import StaleToken as StaleToken
    from leaderjob.inprocess.leadership import Leadership as Leadership
    from leaderjob.inprocess.leadership_api import Leader as Leader
    from leaderjob.inprocess.leadership_options import LeadershipError as LeadershipError
    from leaderjob.inprocess.leadership_options import LeadershipTimeout as LeadershipTimeout
    from leaderjob.inprocess.singleton import Singleton as Singleton
    from leaderjob.inprocess.singleton import SlotRun as SlotRun
    from leaderjob.inprocess.singleton import singleton as singleton

#: Declared for type checkers only: no value here, so that reading it goes through __getattr__.
__version__: str


#: The public names other than ``Leadership`` and ``singleton``, each with the module that defines
#: it: the errors, and the types an application annotates with (``leader()``'s answer, a
#: singleton function's run and the decorated function).
_ERRORS = {
    "Error": "leaderjob.errors",
    "FencingError": "leaderjob.fencing",
    "StaleToken": "leaderjob.fencing",
    "LeadershipError": "leaderjob.inprocess.leadership_options",
    "LeadershipTimeout": "leaderjob.inprocess.leadership_options",
    "Leader": "leaderjob.inprocess.leadership_api",
    "SlotRun": "leaderjob.inprocess.singleton",
    "Singleton": "leaderjob.inprocess.singleton",
}


def __getattr__(name: str) -> object:
    # Lazy, so that `import leaderjob` stays cheap (the daemon and the guardian import no etcd
    # client through it, and importlib.metadata alone costs tens of milliseconds).
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        # pyproject.toml is the version's one source; the installed metadata carries it. A source
        # tree that was never installed has no metadata: say so rather than guess a number.
        try:
            return version("leaderjob")
        except PackageNotFoundError:
            return "0+unknown"
    if name == "Leadership":
        from leaderjob.inprocess.leadership import Leadership

        return Leadership
    if name in _ERRORS:
        import importlib

        return getattr(importlib.import_module(_ERRORS[name]), name)
    if name == "singleton":
        # a callable module: @leaderjob.singleton(...)
        import leaderjob.inprocess.singleton as module

        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
