"""docs/img/lease-timeline.svg is drawn from the code: its numbers are Timing.from_ttl(15)'s.

The picture illustrates S6 (the job is dead by D, and D comes before etcd can expire the lease)
with the default numbers. It is drawn by docs/tools/draw_timeline.py; these tests re-draw it, so
a change of the defaults or of the deadline rule that is not re-drawn fails here, and they read
the numbers back out of the SVG and compare them with the rule as docs/safety.md states it.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

from leaderjob.config import CLOCK_DRIFT, Timing

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "docs" / "tools" / "draw_timeline.py"
SVG = REPO / "docs" / "img" / "lease-timeline.svg"
NS = "{http://www.w3.org/2000/svg}"
TTL = 15


@pytest.fixture(scope="module")
def drawer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("draw_timeline", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["draw_timeline"] = module
    spec.loader.exec_module(module)
    return module


def _expected() -> dict[str, float]:
    """The moments by the rule of docs/safety.md, computed here rather than by the script."""
    t = Timing.from_ttl(TTL)
    usable = TTL * (1 - 2 * CLOCK_DRIFT)
    deadline = 0.0 + usable - t.margin  # D = send time + TTL·(1 − 2ρ) − margin
    return {
        "keepalive_answered": 0.0,
        "keepalive_lost_1": t.renew_interval,
        "keepalive_lost_2": 2 * t.renew_interval,
        "renew_deadline": t.renew_deadline,
        "sigterm": deadline - t.grace,
        "deadline": deadline,
        "etcd_earliest_expiry": usable,
        "successor_start": float(TTL),
    }


def _fmt(seconds: float) -> str:
    return f"{round(seconds, 2):g}"


def _groups(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-event", ""): g for g in root.iter(f"{NS}g") if g.get("data-t")}


def test_the_committed_timeline_is_what_the_script_draws_today(drawer: ModuleType) -> None:
    """Stale picture: run `python docs/tools/draw_timeline.py` and commit the SVG."""
    assert SVG.read_text(encoding="utf-8") == drawer.draw(Timing.from_ttl(TTL))
    assert drawer.main(["--check"]) == 0


def test_the_timeline_shows_the_codes_numbers() -> None:
    """S6 in the picture: each moment sits at the code's time, is labelled with it, and lies where
    the axis says; the job is dead by D, before etcd can expire the lease."""
    root = ET.parse(SVG).getroot()
    groups = _groups(root)
    expected = _expected()
    assert set(groups) == set(expected)

    texts = {t.text or "": t for t in root.iter(f"{NS}text")}
    x0 = float(texts["0"].get("x", "nan"))
    x18 = float(texts["18"].get("x", "nan"))

    for event, t in expected.items():
        group = groups[event]
        assert float(group.get("data-t", "nan")) == pytest.approx(t, abs=1e-3), event
        label = " ".join(el.text or "" for el in group.iter(f"{NS}text"))
        assert re.search(rf"(?<![\d.]){re.escape(_fmt(t))} s\b", label), (event, label)
        line = next(group.iter(f"{NS}line"))
        assert float(line.get("x1", "nan")) == pytest.approx(x0 + (x18 - x0) * t / 18, abs=0.1)

    # The order the safety argument needs, as drawn.
    order = ["renew_deadline", "sigterm", "deadline", "etcd_earliest_expiry", "successor_start"]
    times = [float(groups[e].get("data-t", "nan")) for e in order]
    assert times == sorted(times) and len(set(times)) == len(times), times

    t = Timing.from_ttl(TTL)
    title = " ".join(el.text or "" for el in root.iter(f"{NS}text"))
    for words in (
        f"--ttl {TTL}s",
        f"keepalive every {_fmt(t.renew_interval)} s",
        f"renew deadline {_fmt(t.renew_deadline)} s",
        f"grace {_fmt(t.grace)} s",
        f"margin {_fmt(t.margin)} s",
    ):
        assert words in title, words
