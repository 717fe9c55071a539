"""The explorer's pages as HTML — pure: view data in, markup out (every value escaped).

Jobs (one row per job: leader, token, since when, the run in progress, the last outcome and its
age, the next fire times, suspended by whom, a config conflict), one job (its timeline over a
window, the slots that did not run, the next fire times with their DST notes) and one run (the
facts of `history --run`, with its output tails).
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

from leaderjob.explorer import svg
from leaderjob.explorer.model import Timeline, seconds

#: The windows offered on a job's page (the default is the first one's default: 6h).
WINDOWS = ("1h", "6h", "24h", "3d", "7d")
#: Rows of the tables under the timeline, newest first; the timeline itself shows every run.
TABLE_ROWS = 200


def page(title: str, body: str, election: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · leaderjob</title>"
        '<link rel="stylesheet" href="/assets/ui.css"><script src="/assets/ui.js" defer></script>'
        f'</head><body><header><h1><a href="/">leaderjob · {escape(election)}</a></h1>'
        '<span>read-only run explorer</span><a href="/api">JSON API</a></header>'
        f"<main>{body}</main></body></html>"
    )


def job_href(job: str) -> str:
    return f"/jobs/{quote(job, safe='')}"


def ago(text: Any, now: float) -> str:
    at = seconds(text)
    if at is None:
        return "?"
    s = max(0, int(now - at))
    if s < 60:
        return f"{s}s ago"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s ago"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m ago"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h ago"


def when(text: Any) -> str:
    at = seconds(text)
    return "-" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _leader_cell(doc: dict[str, Any]) -> str:
    """Who leads; a key put by hand at the front of the queue is shown as what it is."""
    if doc.get("stray_key"):
        return (
            "<span class=warn>no leader</span>: a key put by hand without a lease holds the "
            f"queue ({escape(str(doc['stray_key']))}); the next candidate removes it"
        )
    return escape(str((doc.get("leader") or {}).get("identity") or "-"))


def jobs_page(election: str, jobs: list[dict[str, Any]], now: float) -> str:
    head = (
        "<tr><th scope=col>Job</th><th scope=col>Leader</th><th scope=col>Token</th>"
        "<th scope=col>Since</th><th scope=col>Running</th><th scope=col>Last outcome</th>"
        "<th scope=col>Next fire times</th><th scope=col>Suspended</th><th scope=col>Config</th>"
        "</tr>"
    )
    rows = []
    for d in jobs:
        leader = d.get("leader") or {}
        last = d.get("last_run") or {}
        current = d.get("current_run")
        running = (
            f"slot {escape(str(current['slot']))} on {escape(str(current['identity']))}"
            f" for {ago(current.get('claimed_at'), now).removesuffix(' ago')}"
            if current
            else "-"
        )
        last_text = (
            f"{escape(str(last.get('outcome')))} "
            f"<span class=muted>{ago(last.get('finished_at') or last.get('scheduled_time'), now)}"
            "</span>"
            if last
            else "-"
        )
        fires = (
            "<br>".join(
                f"{escape(when(f['at']))} <span class=muted>{escape(f['local'][11:19])} "
                f"{escape(f['zone'])}</span>"
                for f in d.get("upcoming") or []
            )
            or "-"
        )
        susp = d.get("suspension")
        suspended = (
            f"<span class=warn>suspended</span> by {escape(str(susp.get('by', '?')))} "
            f"{ago(susp.get('at'), now)}"
            + (f": {escape(str(susp['reason']))}" if susp.get("reason") else "")
            if d.get("suspended") and susp is not None
            else "no"
        )
        conflict = (
            "<span class=warn>CONFLICT</span>: candidates run different jobs"
            if d.get("config_conflict")
            else "ok"
        )
        rows.append(
            f'<tr data-job="{escape(d["job"])}"><td><a href="{job_href(d["job"])}">'
            f"{escape(d['job'])}</a></td>"
            f"<td>{_leader_cell(d)}</td>"
            f"<td>{escape(str(leader.get('token') or '-'))}</td>"
            f"<td>{ago(d.get('leader_since'), now) if d.get('leader_since') else '-'}</td>"
            f"<td>{running}</td><td>{last_text}</td><td>{fires}</td><td>{suspended}</td>"
            f"<td>{conflict}</td></tr>"
        )
    body = (
        f"<h2>Jobs of {escape(election)}</h2>"
        f"<table id=jobs><caption class=muted>As `leaderjob status` shows them, read "
        f"{escape(when(datetime.fromtimestamp(now, UTC).isoformat()))}</caption>"
        f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"
    )
    return page("Jobs", body, election)


def _window_form(job: str, window: str, until: str) -> str:
    options = "".join(
        f'<option value="{w}"{" selected" if w == window else ""}>{w}</option>' for w in WINDOWS
    )
    if window not in WINDOWS:
        options += f'<option value="{escape(window)}" selected>{escape(window)}</option>'
    return (
        f'<form class="window" method="get" action="{job_href(job)}">'
        f'<label for="window">Window</label><select id="window" name="window">{options}</select>'
        '<label for="until">ending at</label>'
        f'<input id="until" name="until" value="{escape(until)}" placeholder="now" size="22">'
        "<button type=submit>Show</button></form>"
    )


def legend() -> str:
    items = [
        ("ok", "succeeded"),
        ("failed", "failed"),
        ("timeout", "timed out"),
        ("stopped", "stopped (replaced, shutdown, leadership lost)"),
        ("running", "running"),
        ("missed", "missed / missing slot"),
        ("skipped", "skipped / late slot"),
        ("suspended", "suspended slot"),
        ("overlap", "OVERLAP (never expected)"),
    ]
    return (
        "<ul class=legend aria-label=Legend>"
        + "".join(f'<li><span class="sw sw-{c}"></span>{escape(t)}</li>' for c, t in items)
        + "<li>┆ token N: a new leadership</li></ul>"
    )


def job_page(
    election: str,
    status: dict[str, Any],
    timeline: Timeline,
    upcoming: list[dict[str, Any]],
    schedule: dict[str, Any] | None,
    window: str,
    until: str,
    now: float,
) -> str:
    job = timeline.job
    href = job_href(job) + "/runs/{name}"
    counts = timeline.counts
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    overlap = (
        f"<p class=warn role=alert>{len(timeline.overlaps)} overlap(s): two runs of {escape(job)} "
        "were under way at once (shown in red). This should never happen: see docs/safety.md.</p>"
        if timeline.overlaps
        else ""
    )
    checked = timeline.checked_since
    notes = []
    if checked is not None and checked > timeline.since + 1:
        notes.append(
            f"Fire times with no record at all (missing) are looked for from {when(_iso(checked))}"
            " on: a shorter window looks further back."
        )
    if len(timeline.bars) > svg.LINK_LIMIT:
        notes.append(
            f"{len(timeline.bars)} runs: the succeeded ones are bare bars here; choose a shorter "
            "window to open one."
        )
    note = "".join(f"<p class=muted>{escape(n)}</p>" for n in notes)
    sched = (
        f"{escape(str(schedule.get('expr')))} ({escape(str(schedule.get('timezone') or 'UTC'))})"
        if schedule
        else "none published"
    )
    body = (
        f"<h2>{escape(job)}</h2><p>Schedule {sched}. {escape(summary)} from "
        f"{escape(when(_iso(timeline.since)))} to {escape(when(_iso(timeline.until)))}.</p>"
        f"{_window_form(job, window, until)}{overlap}{note}"
        "<div class=layout><div class=main>"
        f"{svg.render(timeline, href)}{legend()}"
        f"{_not_run_table(timeline)}{_upcoming(upcoming, schedule)}</div>"
        '<section id="detail" tabindex="-1" aria-live="polite" aria-label="Run detail" hidden>'
        "</section></div>"
    )
    del status, now
    return page(job, body, election)


def _not_run_table(t: Timeline) -> str:
    if not t.ticks:
        return "<h3>Slots that did not run</h3><p>None in this window.</p>"
    rows = "".join(
        f"<tr><td>{escape(when(_iso(k.at)))}</td><td>{escape(k.slot)}</td>"
        f"<td>{escape(k.reason)}</td><td>{k.slots}</td><td>{escape(k.detail)}</td></tr>"
        for k in reversed(t.ticks[-TABLE_ROWS:])
    )
    more = (
        f"<p class=muted>The newest {TABLE_ROWS} of {len(t.ticks)}.</p>"
        if len(t.ticks) > TABLE_ROWS
        else ""
    )
    return (
        "<h3>Slots that did not run</h3><table id=not-run><thead><tr><th scope=col>Fire time"
        "</th><th scope=col>Slot</th><th scope=col>Why</th><th scope=col>Slots</th>"
        f"<th scope=col>Detail</th></tr></thead><tbody>{rows}</tbody></table>{more}"
    )


def _upcoming(fires: list[dict[str, Any]], schedule: dict[str, Any] | None) -> str:
    if not fires:
        return "<h3>Upcoming</h3><p>No schedule published yet (no leader has led it).</p>"
    zone = escape(str((schedule or {}).get("timezone") or "UTC"))
    rows = "".join(
        f"<tr><td>{escape(when(f['at']))}</td><td>{escape(f['local'])} {escape(f['zone'])}</td>"
        f"<td>{escape(f['note'] or '')}</td></tr>"
        for f in fires
    )
    return (
        f"<h3>Upcoming</h3><table id=upcoming><caption class=muted>Next fire times, in {zone} "
        "(as `leaderjob next` gives them)</caption><thead><tr><th scope=col>UTC</th>"
        "<th scope=col>Local</th><th scope=col>DST</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def run_detail(job: str, r: dict[str, Any]) -> str:
    """One run, the facts of `history --run`: a fragment (the page's detail panel)."""
    rc = r.get("signal") or ("" if r.get("exit_code") is None else f"exit {r['exit_code']}")
    fields = [
        ("outcome", f"{r.get('outcome')}" + (f" ({rc})" if rc else "")),
        ("error", r.get("error")),
        ("slot", r.get("slot")),
        ("scheduled", r.get("scheduled_time")),
        ("started", r.get("started_at")),
        ("finished", r.get("finished_at")),
        (
            "duration",
            None if r.get("duration_seconds") is None else f"{r['duration_seconds']:.3f}s",
        ),
        ("by", r.get("identity")),
        ("token", r.get("token")),
        ("attempt", r.get("attempt")),
        (
            "signals",
            ", ".join(f"{s.get('signal')} ({s.get('reason')})" for s in r.get("signals") or []),
        ),
        (
            "attempts",
            ", ".join(
                f"{a.get('run_id')} #{a.get('attempt')} {a.get('outcome')}"
                for a in r.get("other_attempts") or []
            ),
        ),
    ]
    dl = "".join(
        f"<dt>{name}</dt><dd>{escape(str(value))}</dd>"
        for name, value in fields
        if value not in (None, "", [])
    )
    tails = []
    for stream in ("stdout", "stderr"):
        tail = r.get(f"{stream}_tail")
        if tail:
            cut = " (cut: the last 4 KiB)" if r.get(f"{stream}_truncated") else ""
            tails.append(
                f'<h4>{stream}{cut}</h4><pre class="tail" data-stream="{stream}">'
                f"{escape(str(tail))}</pre>"
            )
    if not tails:
        tails.append("<p class=muted>No output kept.</p>")
    return (
        f'<h3>Run <span class="run-id">{escape(str(r.get("run_id") or "-"))}</span></h3>'
        f"<dl>{dl}</dl>{''.join(tails)}"
        f'<p><a href="{job_href(job)}">back to {escape(job)}</a></p>'
    )


def message_page(election: str, title: str, text: str) -> str:
    return page(title, f"<h2>{escape(title)}</h2><p>{escape(text)}</p>", election)


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()
