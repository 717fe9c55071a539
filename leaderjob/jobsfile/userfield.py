"""Is the first word of a crontab command really ``/etc/crontab``'s user field?

``0 3 * * * root /usr/bin/cleanup`` is a system crontab line: read as a user crontab it would run
a program called ``root``. The first word is taken for a user field when it is a user of the
system's user database, is not a program on PATH nor a shell builtin, holds no ``/`` or ``=``, and
more words follow it. So ``sync`` (a user and a program), ``mail -s ...`` and ``./backup`` run as
written. The rule is pure given :class:`Names`; :func:`system_names` asks the running system.
"""

from __future__ import annotations

import pwd
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass

# POSIX sh's builtins and reserved words: `exec /bin/job` is a command whatever the users are.
_SH_WORDS = frozenset(
    {
        ".", ":", "[", "alias", "bg", "break", "case", "cd", "command", "continue", "do", "done",
        "echo", "elif", "else", "eval", "exec", "exit", "export", "false", "fc", "fg", "fi", "for",
        "getopts", "hash", "if", "jobs", "kill", "printf", "pwd", "read", "readonly", "return",
        "set", "shift", "test", "then", "times", "trap", "true", "type", "ulimit", "umask",
        "unalias", "unset", "until", "wait", "while",
    }
)  # fmt: skip
_USER_NAME = re.compile(r"[a-z_][a-z0-9_.-]*\$?", re.IGNORECASE)


@dataclass(frozen=True)
class Names:
    """What the system knows of a word: a user? a program on PATH?"""

    is_user: Callable[[str], bool]
    is_program: Callable[[str], bool]


def _is_user(word: str) -> bool:
    try:
        pwd.getpwnam(word)
    except KeyError:
        return False
    return True


def _is_program(word: str) -> bool:
    return shutil.which(word) is not None


def system_names() -> Names:
    return Names(is_user=_is_user, is_program=_is_program)


def user_field_problem(command: str, names: Names) -> str | None:
    """The one-line problem if ``command`` begins with a user field, else None."""
    words = command.split(None, 1)
    if len(words) < 2:
        return None
    first = words[0]
    if first in _SH_WORDS or not _USER_NAME.fullmatch(first):
        return None
    if not names.is_user(first) or names.is_program(first):
        return None
    return (
        f"'{first}' before the command is /etc/crontab's user field: drop the user field "
        f"(leaderjob runs every job as the user it runs as); if '{first}' is a program, write "
        f"its path (./{first})"
    )
