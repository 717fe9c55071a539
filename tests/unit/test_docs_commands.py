"""The commands in the docs' fenced blocks stay true: every `leaderjob …` command of docs/ and
the README (also inside `kubectl exec … --` and `docker compose exec …`) parses with today's
options; the ones that can run here (no etcd, no cluster) run and exit 0, and where the block
shows their output (`$ command` then its lines) they print exactly that; every `kubectl apply -k
DIR` renders with `kubectl kustomize DIR`. Beside them, the names docs and manifests quote are the
code's: the fencing header, the jobs file's key spellings, the rollout's words."""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from leaderjob import cli

ROOT = Path(__file__).resolve().parents[2]
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
SHELLS = {"", "sh", "bash", "console", "shell"}


@dataclass
class Command:
    page: str
    line: int
    argv: list[str]  # the words after `leaderjob`
    output: list[str] | None  # the lines a `$ command` shows under it, if any

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: leaderjob {shlex.join(self.argv)}"


def fenced_blocks(page: Path) -> list[tuple[int, list[str]]]:
    """(line number of the first line, lines) of every shell-ish fenced block."""
    blocks, lines = [], page.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            if fence.group(1) in SHELLS:
                blocks.append((i + 2, lines[i + 1 : end]))
            i = end
        i += 1
    return blocks


def documented_commands() -> list[Command]:
    found = []
    for page in PAGES:
        for first, block in fenced_blocks(page):
            i = 0
            while i < len(block):
                start, text = i, block[i]
                while text.endswith("\\") and i + 1 < len(block):
                    i += 1
                    text = text[:-1] + " " + block[i].strip()
                i += 1
                prompt = text.startswith("$ ")
                text = text.removeprefix("$ ").strip()
                if "<" in text or "[" in text:  # a synopsis or a placeholder, not a command
                    continue
                try:
                    words = shlex.split(text, comments=True)
                except ValueError:
                    continue
                starts = [
                    i
                    for i, w in enumerate(words)
                    if w == "leaderjob"
                    and (i == 0 or words[i - 1] == "--" or words[i - 1].startswith("leaderjob-"))
                ]
                if not starts:
                    continue
                at = starts[0]
                argv = words[at + 1 :]
                if not argv or (argv[0].startswith(("selftest:", "-")) and argv[0] != "--version"):
                    continue
                output = None
                if prompt:
                    end = next(
                        (j for j in range(i, len(block)) if block[j].startswith("$ ")), len(block)
                    )
                    output = block[i:end]
                found.append(
                    Command(
                        page.name,
                        first + start,
                        argv[: argv.index("&")] if "&" in argv else argv,
                        output,
                    )
                )
    return found


COMMANDS = documented_commands()


def test_the_docs_have_commands_to_check() -> None:
    verbs = {c.argv[0] for c in COMMANDS}
    assert {"status", "history", "next", "run", "fenced", "trigger", "audit"} <= verbs, verbs


def _parse(argv: list[str]) -> click.Context:
    """Parse like the command line would, without running anything."""
    command: click.Command = cli.main
    ctx = click.Context(cli.main, info_name="leaderjob")
    args = list(argv)
    while isinstance(command, click.Group):
        assert args, "a command group needs its command"
        sub = command.get_command(ctx, args[0])
        assert sub is not None, f"no command {args[0]!r}"
        ctx = click.Context(sub, info_name=args[0], parent=ctx)
        command, args = sub, args[1:]
    command.parse_args(ctx, args)
    return ctx


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_every_documented_leaderjob_command_parses(
    command: Command, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    for name in [k for k in os.environ if k.startswith("LEADERJOB_")]:
        monkeypatch.delenv(name)
    try:
        _parse(command.argv)
    except click.UsageError as exc:
        pytest.fail(f"{command}: {exc.format_message()}")


#: What runs here: no etcd, no cluster, nothing written.
RUNNABLE = (("next",), ("jobs", "check"), ("fenced", "sql"), ("--version",))


@pytest.mark.parametrize(
    "command",
    [c for c in COMMANDS if tuple(c.argv[:2]) in RUNNABLE or tuple(c.argv[:1]) in RUNNABLE],
    ids=str,
)
def test_documented_commands_that_can_run_here_run_and_print_what_the_docs_show(
    command: Command, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli.main, command.argv)
    assert result.exit_code == 0, f"{command}\n{result.output}"
    if command.output:
        assert result.output.splitlines() == command.output, f"{command}\n{result.output}"


def test_every_kustomization_the_docs_apply_renders() -> None:
    from tests.deploy._support import require_tool

    dirs = set()
    for page in PAGES:
        dirs |= set(re.findall(r"kubectl apply -k (\S+)", page.read_text()))
    assert dirs, "the docs apply no kustomization"
    kubectl = require_tool("kubectl")
    for d in sorted(dirs):
        result = subprocess.run(
            [kubectl, "kustomize", str(ROOT / d)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"kubectl kustomize {d}: {result.stderr}"


def test_the_fencing_header_the_docs_name_is_the_one_the_code_reads() -> None:
    source = (ROOT / "leaderjob" / "fencing" / "http.py").read_text()
    names = set()
    for path in [*PAGES, *(ROOT / "examples").rglob("*"), *(ROOT / "deploy").rglob("*.yaml")]:
        if path.is_file():
            names |= set(re.findall(r"\b[\w-]*Fencing-Token\b", path.read_text(errors="ignore")))
    assert names, "no fencing header named anywhere"
    for name in names:
        assert name in source, f"{name} is named in the docs or examples but not read by the code"


def test_every_hyphenated_jobs_file_key_may_be_written_with_underscores() -> None:
    """docs/jobs.md says so of every key; the reader must agree."""
    from leaderjob.jobsfile import parse_jobs

    after = (ROOT / "docs" / "jobs.md").read_text().split("### Options", 1)[1]
    table = after[after.index("| key |") :].split("\n\n", 1)[0]
    keys = [k for k in re.findall(r"^\| `([a-z-]+)` \|", table, re.M) if "-" in k]
    assert "catch-up" in keys and "history-limit" in keys, keys
    values = {"catch-up": '"skip"', "starting-deadline": '"1m"', "history-limit": "5",
              "health-cmd": '"true"', "health-url": '"http://x/"', "on-failure": '"true"',
              "on-failure-timeout": '"5s"', "ping-url": '"https://hc.example/x"'}  # fmt: skip
    for key in keys:
        text = (
            f'[jobs.a]\nschedule = "@hourly"\ncommand = ["true"]\n'
            f"{key.replace('-', '_')} = {values[key]}\n"
        )
        parse_jobs(text, "jobs.toml")


def test_the_rollout_comment_says_what_the_strategy_does() -> None:
    from tests.deploy._support import K8S, load_yaml

    text = (K8S / "base" / "deployment.yaml").read_text()
    update = load_yaml(K8S / "base" / "deployment.yaml")["spec"]["strategy"]["rollingUpdate"]
    if update["maxUnavailable"] and update["maxSurge"]:
        assert "One pod at a time" not in text, "maxSurge 1 + maxUnavailable 1 is up to two"


def test_every_jobs_check_the_docs_and_shipped_files_name_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`leaderjob jobs check PATH` as the docs, the shipped jobs files and the examples write it
    (inline): each file exists and is valid."""
    monkeypatch.chdir(ROOT)
    sources = [*PAGES, *(ROOT / "deploy").rglob("jobs.toml"), *(ROOT / "examples").glob("*")]
    found = set()
    for path in sources:
        if path.is_file():
            found |= set(re.findall(r"`leaderjob (jobs check [\w./-]+\.?\w*|fenced sql)`",
                                    path.read_text(errors="ignore")))  # fmt: skip
    checks = {f for f in found if f.startswith("jobs check ")}
    assert {"jobs check deploy/kubernetes/base/jobs.toml", "jobs check examples/crontab"} <= checks
    for words in sorted(found):
        if words.endswith("FILE"):
            continue
        result = CliRunner().invoke(cli.main, words.split())
        assert result.exit_code == 0, f"leaderjob {words}\n{result.output}"
