"""The timeline as SVG — pure: a :class:`~leaderjob.explorer.model.Timeline` in, markup out.

Rows from the top: the time axis (UTC), the leadership markers (a dashed line through every
lane, labelled with the new token), the lane of slots that did not run (a tick each, coloured by
why; a range of slots is a band), then one lane per replica with a bar per run coloured by its
outcome. Each run is a link to its detail (the page's script opens it beside the timeline), so
the bars are reachable with the keyboard; an overlap of two runs is a red band across the lanes
and a red outline on the runs in it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from html import escape
from urllib.parse import quote

from leaderjob.explorer.model import NOT_RUN_LANE, Bar, Tick, Timeline

WIDTH = 1200
LABEL = 150  # the lane names' column
RIGHT = 10
AXIS = 22
MARKS = 20
LANE = 28
BAR = 18
#: Axis steps, in seconds: the first that gives at most ~10 labels across the window.
STEPS = (1, 2, 5, 10, 15, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400)
#: Above this many runs in a window (a bar is then well under a pixel wide), a succeeded run is
#: drawn as a bare bar: no link, no tooltip — a shorter window opens it. Other runs keep theirs.
LINK_LIMIT = 1500
#: Outcomes drawn in the successful colour; anything else not listed below is a failure.
OUTCOME_CLASS = {
    "succeeded": "ok",
    "running": "running",
    "failed": "failed",
    "timed_out": "timeout",
    "killed_at_deadline": "timeout",
    "replaced": "stopped",
    "shutdown": "stopped",
    "killed_on_leadership_loss": "stopped",
    "unhealthy": "stopped",
}


def outcome_class(outcome: str) -> str:
    return OUTCOME_CLASS.get(outcome, "failed")


def render(t: Timeline, run_href: str) -> str:
    """The timeline's ``<svg>``. ``run_href``: the URL of a run's detail, ``{name}`` replaced by
    the record's name."""
    span = max(t.until - t.since, 1.0)
    plot = WIDTH - LABEL - RIGHT

    def x(at: float) -> float:
        return LABEL + plot * (min(max(at, t.since), t.until) - t.since) / span

    lanes = [NOT_RUN_LANE, *t.lanes]
    top = AXIS + MARKS
    height = top + LANE * len(lanes) + 4
    y_of = {lane: top + i * LANE for i, lane in enumerate(lanes)}
    out = [
        f'<svg id="timeline" class="timeline" viewBox="0 0 {WIDTH} {height}" '
        f'width="100%" role="group" aria-label="Timeline of {escape(t.job)}: '
        f"{len(t.bars)} runs on {len(t.lanes)} replicas, {len(t.ticks)} slots not run, "
        f'{len(t.markers)} leaderships, {len(t.overlaps)} overlaps">'
    ]
    for i, lane in enumerate(lanes):
        y = y_of[lane]
        shade = "lane-a" if i % 2 else "lane-b"
        out.append(
            f'<g class="lane" data-lane="{escape(lane)}"><rect class="{shade}" x="0" y="{y}" '
            f'width="{WIDTH}" height="{LANE}"/><text class="lane-label" x="6" y="{y + 18}">'
            f"{escape(_short(lane, 20))}</text></g>"
        )
    out.extend(_axis(t, x, height))
    for lo, hi in t.overlaps:
        out.append(
            f'<rect class="overlap" x="{x(lo):.2f}" y="{top}" width="{max(x(hi) - x(lo), 2):.2f}" '
            f'height="{height - top}"><title>overlap: two runs at once from {_hms(lo)} to '
            f"{_hms(hi)}</title></rect>"
        )
    y_not = y_of[NOT_RUN_LANE]
    out.extend(_tick(k, x, y_not, run_href) for k in t.ticks)
    linked = len(t.bars) <= LINK_LIMIT
    lane_attr = {lane: escape(lane) for lane in t.lanes}
    for b in t.bars:
        y = y_of[b.lane]
        if linked or b.outcome != "succeeded" or b.overlap or b.running:
            out.append(_bar(b, x, y, run_href))
        else:
            x0 = x(b.start)
            out.append(
                f'<rect class="bar o-ok" x="{x0:.1f}" y="{y + (LANE - BAR) // 2}" '
                f'width="{max(x(b.end) - x0, 1.5):.1f}" height="{BAR}" '
                f'data-replica="{lane_attr[b.lane]}"/>'
            )
    for m in t.markers:
        mx = x(m.at)
        out.append(
            f'<g class="marker" data-token="{m.token}"><line x1="{mx:.2f}" y1="{AXIS + 4}" '
            f'x2="{mx:.2f}" y2="{height}"/><text x="{mx + 3:.2f}" y="{AXIS + 15}">token {m.token}'
            f"</text><title>token {m.token}: {escape(m.identity)} leads from {_hms(m.at)} (its "
            "first record in this window)</title></g>"
        )
    out.append("</svg>")
    return "".join(out)


def _axis(t: Timeline, x: Callable[[float], float], height: int) -> list[str]:
    span = t.until - t.since
    step = next((s for s in STEPS if span / s <= 10), STEPS[-1])
    first = (int(t.since) // step + 1) * step
    parts = []
    at = float(first)
    while at < t.until:
        px = x(at)
        label = _hms(at) if step < 86400 else datetime.fromtimestamp(at, UTC).strftime("%m-%d")
        if step >= 3600 and at % 86400 == 0:
            label = datetime.fromtimestamp(at, UTC).strftime("%m-%d")
        parts.append(
            f'<line class="grid" x1="{px:.2f}" y1="{AXIS}" x2="{px:.2f}" y2="{height}"/>'
            f'<text class="axis" x="{px:.2f}" y="14" text-anchor="middle">{label}</text>'
        )
        at += step
    return parts


def _bar(b: Bar, x: Callable[[float], float], y: int, run_href: str) -> str:
    x0, x1 = x(b.start), x(b.end)
    cls = f"bar o-{outcome_class(b.outcome)}" + (" overlapping" if b.overlap else "")
    what = "running" if b.running else b.outcome
    title = escape(
        f"{what}: slot {b.slot}, {_hms(b.start)}"
        + ("" if b.running else f" to {_hms(b.end)}")
        + f" ({b.end - b.start:.1f}s) on {b.lane}, token {b.token}"
        + (f", attempt {b.attempt}" if b.attempt else "")
        + (" — OVERLAPS another run" if b.overlap else "")
    )
    rect = (
        f'<rect class="{cls}" x="{x0:.2f}" y="{y + (LANE - BAR) // 2}" '
        f'width="{max(x1 - x0, 1.5):.2f}" height="{BAR}"/><title>{title}</title>'
    )
    replica = escape(b.lane)
    if b.running or not b.name:
        return f'<g class="run running" data-replica="{replica}">{rect}</g>'
    href = escape(run_href.replace("{name}", quote(b.name)))
    return (
        f'<a class="run" href="{href}" data-run="{escape(b.run_id)}" '
        f'data-replica="{replica}">{rect}</a>'
    )


def _tick(k: Tick, x: Callable[[float], float], y: int, run_href: str) -> str:
    x0 = x(k.at)
    title = f"{k.reason}: slot {k.slot}" + (f" ({k.detail})" if k.detail else "")
    if k.until is not None:
        mark = (
            f'<rect class="range" x="{x0:.2f}" y="{y + 5}" '
            f'width="{max(x(k.until) - x0, 2):.2f}" height="{LANE - 10}"/>'
        )
    else:
        mark = f'<line x1="{x0:.2f}" y1="{y + 3}" x2="{x0:.2f}" y2="{y + LANE - 3}"/>'
    body = (
        f'<g class="tick r-{escape(k.reason)}" data-reason="{escape(k.reason)}" '
        f'data-slot="{escape(k.slot)}">{mark}<title>{escape(title)}</title></g>'
    )
    if k.name:
        href = escape(run_href.replace("{name}", quote(k.name)))
        return f'<a class="run" href="{href}">{body}</a>'
    return body


def _hms(at: float) -> str:
    return time.strftime("%H:%M:%SZ", time.gmtime(at))


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
