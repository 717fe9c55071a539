"""Draw docs/img/lease-timeline.svg: one lease's life with the default timing, from the code.

Every number in the picture comes from ``Timing.from_ttl(TTL)`` (leaderjob/config.py), so when
the defaults change, re-running this script changes the picture; tests/unit/test_docs_pictures.py
re-draws it and fails when the committed SVG is stale or a number differs from the code's.

    python docs/tools/draw_timeline.py            # rewrite docs/img/lease-timeline.svg
    python docs/tools/draw_timeline.py --check    # exit 1 if the committed file is stale

Plain Python writing SVG text: no plotting library. Each marker carries ``data-event`` and
``data-t`` (seconds after the last answered keepalive was sent) so a test can read them back.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from html import escape
from pathlib import Path

from leaderjob.config import CLOCK_DRIFT, Timing

TTL = 15
OUT = Path(__file__).resolve().parents[1] / "img" / "lease-timeline.svg"

# Geometry: seconds → pixels.
WIDTH, HEIGHT = 1100, 520
LEFT, RIGHT = 150, 200  # the right margin holds the labels of the moments near the end
T_MAX = 18.0
ROW_LEADER, ROW_ETCD, ROW_SUCCESSOR = 120, 210, 290
AXIS_Y = 340


@dataclass(frozen=True)
class Marker:
    """A moment on the timeline: an identifier, its time, and the words under it."""

    event: str
    t: float
    label: str
    note: str
    color: str


def fmt(seconds: float) -> str:
    """Seconds as the picture prints them: at most two decimals, no trailing zeros."""
    return f"{round(seconds, 2):g}"


def moments(timing: Timing) -> dict[str, float]:
    """The moments of the picture, in seconds after the last answered keepalive was sent (t = 0).

    The leader's local deadline D is the code's own ``deadline_after``; etcd's earliest expiry is
    the TTL as the leader's clock may see it pass (the drift bound ρ), and the successor can start
    no earlier than the TTL after the lease's last renewal reached etcd, which is after t = 0.
    """
    deadline = timing.deadline_after(0.0)
    return {
        "keepalive_answered": 0.0,
        "keepalive_lost_1": timing.renew_interval,
        "keepalive_lost_2": 2 * timing.renew_interval,
        "renew_deadline": timing.renew_deadline,
        "sigterm": deadline - timing.grace,
        "deadline": deadline,
        "etcd_earliest_expiry": timing.usable_ttl,
        "successor_start": timing.ttl,
    }


def markers(timing: Timing) -> list[Marker]:
    m = moments(timing)
    return [
        Marker(
            "renew_deadline",
            m["renew_deadline"],
            f"renew deadline {fmt(m['renew_deadline'])} s",
            "gives up renewing, steps down",
            "#7a5cc2",
        ),
        Marker(
            "sigterm",
            m["sigterm"],
            f"D − grace {fmt(m['sigterm'])} s",
            "SIGTERM to the job",
            "#d9822b",
        ),
        Marker(
            "deadline",
            m["deadline"],
            f"D {fmt(m['deadline'])} s",
            "the job is dead (SIGKILL just before)",
            "#c23030",
        ),
        Marker(
            "etcd_earliest_expiry",
            m["etcd_earliest_expiry"],
            f"etcd expiry ≥ {fmt(m['etcd_earliest_expiry'])} s",
            "TTL·(1 − 2ρ) on our clock",
            "#555555",
        ),
        Marker(
            "successor_start",
            m["successor_start"],
            f"successor ≥ {fmt(m['successor_start'])} s",
            "its job starts (≈ TTL + 1.5 s, L1)",
            "#2b8a3e",
        ),
    ]


def x(t: float) -> float:
    return LEFT + (WIDTH - LEFT - RIGHT) * t / T_MAX


def _text(px: float, py: float, body: str, **attrs: str) -> str:
    extra = "".join(f' {k.rstrip("_").replace("_", "-")}="{escape(v)}"' for k, v in attrs.items())
    return f'<text x="{px:.1f}" y="{py:.1f}"{extra}>{escape(body)}</text>'


def draw(timing: Timing) -> str:
    """The SVG document for ``timing`` (deterministic: same timing, same bytes)."""
    m = moments(timing)
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="13" '
        f'data-ttl="{fmt(timing.ttl)}">',
        f"<title>One lease with --ttl {fmt(timing.ttl)}s and the default timing</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        _text(
            20,
            28,
            f"One lease, --ttl {fmt(timing.ttl)}s, defaults: keepalive every "
            f"{fmt(timing.renew_interval)} s, renew deadline {fmt(timing.renew_deadline)} s, "
            f"grace {fmt(timing.grace)} s, margin {fmt(timing.margin)} s",
            font_weight="bold",
        ),
        _text(
            20,
            50,
            f"t = 0: the leader sends the last keepalive that etcd answers; then etcd becomes "
            f"unreachable. D = send time + TTL·(1 − 2ρ) − margin, ρ = {CLOCK_DRIFT:g}.",
            fill="#333333",
        ),
    ]
    # Row labels.
    for row, name in (
        (ROW_LEADER, "leader"),
        (ROW_ETCD, "etcd lease"),
        (ROW_SUCCESSOR, "successor"),
    ):
        out.append(_text(20, row + 5, name, font_weight="bold"))

    # The leader's job: running until SIGTERM, the grace period until D.
    out.append(
        f'<rect x="{x(0):.1f}" y="{ROW_LEADER - 10}" width="{x(m["sigterm"]) - x(0):.1f}" '
        f'height="20" fill="#a5d8a5" data-event="job_running"/>'
    )
    out.append(_text(x(0) + 8, ROW_LEADER + 5, "job runs (token N)"))
    out.append(
        f'<rect x="{x(m["sigterm"]):.1f}" y="{ROW_LEADER - 10}" '
        f'width="{x(m["deadline"]) - x(m["sigterm"]):.1f}" height="20" fill="#f5c28a" '
        f'data-event="grace"/>'
    )
    # Keepalive sends on the cadence: the first answered, the later ones lost.
    for key, answered in (
        ("keepalive_answered", True),
        ("keepalive_lost_1", False),
        ("keepalive_lost_2", False),
    ):
        t = m[key]
        color = "#1f6feb" if answered else "#999999"
        out.append(
            f'<g data-event="{key}" data-t="{t:.3f}">'
            f'<line x1="{x(t):.1f}" y1="{ROW_LEADER - 34}" x2="{x(t):.1f}" y2="{ROW_LEADER - 12}" '
            f'stroke="{color}" stroke-width="2"/>'
            f'<circle cx="{x(t):.1f}" cy="{ROW_LEADER - 34}" r="4" fill="{color}"/>'
            + _text(
                x(t) + 7,
                ROW_LEADER - 30,
                f"keepalive {fmt(t)} s" + (" ✓" if answered else " ✗ lost"),
                fill=color,
            )
            + "</g>"
        )
    # The lease as etcd keeps it: alive until the TTL after the last renewal reached it.
    out.append(
        f'<rect x="{x(0):.1f}" y="{ROW_ETCD - 10}" width="{x(timing.ttl) - x(0):.1f}" '
        f'height="20" fill="#d0d7de" data-event="lease_alive"/>'
    )
    out.append(_text(x(0) + 8, ROW_ETCD + 5, f"lease alive at etcd (TTL {fmt(timing.ttl)} s)"))
    # The successor: waits on its watch, leads once the lease is gone.
    out.append(
        f'<line x1="{x(0):.1f}" y1="{ROW_SUCCESSOR}" x2="{x(m["successor_start"]):.1f}" '
        f'y2="{ROW_SUCCESSOR}" stroke="#999999" stroke-dasharray="4 4"/>'
    )
    out.append(_text(x(0) + 8, ROW_SUCCESSOR - 8, "waits on its watch of the leader's key"))
    out.append(
        f'<rect x="{x(m["successor_start"]):.1f}" y="{ROW_SUCCESSOR - 10}" '
        f'width="{x(T_MAX) - x(m["successor_start"]):.1f}" height="20" fill="#a5d8a5" '
        f'data-event="successor_job"/>'
    )
    out.append(_text(x(m["successor_start"]) + 6, ROW_SUCCESSOR + 5, "job (token > N)"))

    # Vertical markers. The moments lie close together, so each gets its own label line below
    # the axis, the latest on top: every label reads rightwards from its own line and crosses
    # only lines that have already ended above it.
    ordered = sorted(markers(timing), key=lambda mk: -mk.t)
    for i, mk in enumerate(ordered):
        px = x(mk.t)
        label_y = AXIS_Y + 44 + 30 * i
        out.append(
            f'<g data-event="{mk.event}" data-t="{mk.t:.3f}">'
            f'<line x1="{px:.1f}" y1="{ROW_LEADER - 20}" x2="{px:.1f}" y2="{label_y + 16}" '
            f'stroke="{mk.color}" stroke-width="1.5" stroke-dasharray="5 3"/>'
            + _text(px + 5, label_y, mk.label, fill=mk.color)
            + _text(px + 5, label_y + 13, mk.note, fill=mk.color, font_size="11")
            + "</g>"
        )

    # The time axis, one tick a second.
    out.append(
        f'<line x1="{x(0):.1f}" y1="{AXIS_Y}" x2="{x(T_MAX):.1f}" y2="{AXIS_Y}" stroke="#333333"/>'
    )
    for second in range(int(T_MAX) + 1):
        px = x(second)
        out.append(
            f'<line x1="{px:.1f}" y1="{AXIS_Y}" x2="{px:.1f}" y2="{AXIS_Y + 5}" stroke="#333333"/>'
        )
        out.append(_text(px, AXIS_Y + 18, f"{second}", text_anchor="middle", font_size="11"))
    out.append(_text(x(T_MAX), AXIS_Y - 6, "seconds", text_anchor="end", font_size="11"))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    svg = draw(Timing.from_ttl(TTL))
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != svg:
            print(f"{args.out} is stale: run python docs/tools/draw_timeline.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(svg, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
