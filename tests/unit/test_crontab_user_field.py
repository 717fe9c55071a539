"""A crontab line in `/etc/crontab` form (a user field before the command) is refused with one
`FILE:LINE:` line saying to drop the field, and a command whose first word merely shares a user's
name still runs as written.

The rule (docs/jobs.md, Crontab): the first word of the command is a user of the system's user
database, is not a program on PATH nor a shell builtin, has no `/` or `=`, and more words follow.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from leaderjob.cli.jobs import jobs
from leaderjob.jobsfile import JobsFileError, parse_jobs
from leaderjob.jobsfile.crontab import _parse_crontab
from leaderjob.jobsfile.userfield import Names

# A Debian-like system: `sync` and `mail` are users and programs, `backup` only a user.
USERS = {"root", "www-data", "backup", "sync", "mail"}
PROGRAMS = {"sync", "mail", "php", "tar"}
FAKE = Names(is_user=USERS.__contains__, is_program=PROGRAMS.__contains__)


def _problems(line: str) -> list[tuple[int, str]]:
    return _parse_crontab(f"# header\n{line}\n", "UTC", FAKE)[1]


@pytest.mark.parametrize(
    ("line", "user"),
    [
        ("0 3 * * * root /usr/bin/cleanup --all", "root"),
        ("*/5 * * * * www-data php /srv/app/cron.php", "www-data"),
        ("@daily backup tar czf /backups/x.tgz /srv", "backup"),
        ("@every 1h root run-parts /etc/cron.hourly", "root"),
    ],
)
def test_a_user_field_is_refused_at_its_line(line: str, user: str) -> None:
    [(number, message)] = _problems(line)
    assert number == 2
    assert f"'{user}'" in message and "drop the user field" in message, message
    assert "\n" not in message


@pytest.mark.parametrize(
    "line",
    [
        "0 3 * * * sync",  # a user and a program: the program runs
        "0 3 * * * mail -s report ops@example.com < /tmp/report",  # a program on PATH
        "0 3 * * * backup",  # a user, but nothing follows: not the /etc/crontab form
        "0 3 * * * ./root --all",  # a path is never a user name
        "0 3 * * * HOME=/srv root-task",  # a variable assignment
        "0 3 * * * cleanup /var/tmp",  # not a user
        "0 3 * * * true && root-report",  # a builtin
    ],
)
def test_a_command_whose_first_word_only_looks_like_a_user_is_kept(line: str) -> None:
    jobs, problems = _parse_crontab(f"{line}\n", "UTC", FAKE)
    assert problems == [] and len(jobs) == 1


def test_a_builtin_named_like_a_user_is_kept() -> None:
    names = Names(is_user=lambda word: True, is_program=lambda word: False)
    assert _parse_crontab("@daily exec /bin/job\n@daily test -f /x\n", "UTC", names)[1] == []


def test_the_loader_asks_the_real_system_about_root(tmp_path: Path) -> None:
    # Every Unix system has a `root` user and no program called `root`.
    with pytest.raises(JobsFileError) as info:
        parse_jobs("0 3 * * * root /usr/bin/cleanup\n", "crontab")
    [message] = info.value.problems
    assert message.startswith("crontab:1: 'root' ") and "drop the user field" in message, message
    path = tmp_path / "crontab"
    path.write_text("# name: cleanup\n0 3 * * * root /usr/bin/cleanup\n")
    result = CliRunner().invoke(jobs, ["check", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:2: 'root' " in result.output
