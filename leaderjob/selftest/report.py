"""The self-test's verdict (PASS, WARN, FAIL) with advice, and the report as text."""

from __future__ import annotations

from typing import Any

from leaderjob.config import Timing


def verdict(report: dict[str, Any], timing: Timing) -> None:
    """Add ``verdict`` (PASS, WARN, FAIL) and ``advice`` to a report."""
    advice: list[str] = []
    scenarios = report["scenarios"]
    margins = [s["margin_seconds"] for s in scenarios]
    failed = [s for s in scenarios if s["margin_seconds"] is None or s.get("error")]
    ttl = timing.ttl
    rtt = report.get("keepalive_rtt") or {}
    p99 = rtt.get("p99") or 0.0
    if failed or any(m is not None and m <= 0 for m in margins):
        level = "FAIL"
        for s in scenarios:
            m = s["margin_seconds"]
            if m is not None and m <= 0:
                advice.append(
                    f"{s['fault']}: the old job was still alive {-m:.3f}s after etcd released "
                    f"its key. Raise --margin (now {timing.margin:g}s) or --ttl, and look for "
                    "CPU throttling or a slow machine (the watchdog could not kill in time)."
                )
            elif s.get("error") or m is None:
                why = s.get("error") or "no key deletion or job end seen"
                advice.append(f"{s['fault']}: not measured ({why})")
    else:
        level = "PASS"
        thin = max(0.1, 3 * p99)
        least = min(margins) if margins else 0.0
        if least < thin:
            level = "WARN"
            advice.append(
                f"the margin ({least:.3f}s) is thin next to the keepalive round trip (p99 "
                f"{p99 * 1000:.1f} ms): raise --margin (now {timing.margin:g}s) or --ttl."
            )
        slow = [s for s in scenarios if (s["failover_seconds"] or 0) > ttl + 1.5]
        if slow:
            times = ", ".join(f"{s['failover_seconds']:.2f}s" for s in slow)
            advice.append(
                f"failover took longer than TTL + 1.5 s ({times}): etcd swept the expired "
                "lease late (a busy etcd?) or the successor was slow to start its job."
            )
        if p99 > timing.renew_interval / 4:
            level = "WARN"
            advice.append(
                f"keepalive p99 {p99 * 1000:.0f} ms is over a quarter of the renew interval "
                f"({timing.renew_interval:g}s): etcd or the network is slow for TTL {ttl:g}s; "
                "raise --ttl or look at etcd's disk latency."
            )
    problem = etcd_election_problem(report, timing)
    if problem:
        level = "WARN" if level == "PASS" else level
        advice.append(problem)
    cleanup = report.get("cleanup") or {}
    if cleanup and not cleanup.get("clean"):
        advice.append(
            f"cleanup left keys {cleanup.get('keys_left')} / leases {cleanup.get('leases_left')}"
        )
    report["verdict"] = level
    report["advice"] = advice


def etcd_election_budget(timing: Timing, election_timeout: float, rtt: float) -> float:
    """What an etcd leader's failure may cost a leader's renewals, in the worst phase, minus what
    the renew budget leaves: positive means leadership can be lost with no fault aimed at it.

    The etcd leader dies just before our next keepalive is due (one renew interval after the
    last answered one); its followers wait up to two election timeouts (raft randomises the
    timeout in [E, 2E)) before they elect a new leader in a few round trips; our keepalive must
    then get through before the renew deadline. A new etcd leader extends every lease by a full
    TTL, so if the daemon renews within its budget the election costs nothing (SAFETY.md §4).
    """
    needed = timing.renew_interval + 2 * election_timeout + 3 * rtt
    return needed - timing.renew_deadline


def etcd_election_problem(report: dict[str, Any], timing: Timing) -> str | None:
    """Advice when the TTL is too short to ride out an etcd election (only on a cluster of
    more than one member: a single member that fails is an outage, not an election)."""
    members = report.get("etcd_members")
    if not members or members < 2:
        return None
    election = float(report.get("etcd_election_timeout") or 1.0)
    rtt = float((report.get("keepalive_rtt") or {}).get("p99") or 0.0)
    over = etcd_election_budget(timing, election, rtt)
    if over <= 0:
        return None
    # The smallest whole-second TTL whose default budget absorbs the election.
    ttl = int(timing.ttl)
    while etcd_election_budget(Timing.from_ttl(ttl), election, rtt) > 0 and ttl < 3600:
        ttl += 1
    return (
        f"TTL {timing.ttl:g}s is too short to ride out an etcd leader election on this "
        f"{members}-member cluster: a renew interval ({timing.renew_interval:g}s) plus up to "
        f"2 × the election timeout ({election:g}s, etcd's --election-timeout; give yours with "
        f"--etcd-election-timeout) plus 3 round trips (p99 {rtt * 1000:.0f} ms) exceeds the "
        f"renew deadline ({timing.renew_deadline:.2f}s) by {over:.2f}s, so the leader can lose "
        f"leadership when etcd's leader fails. Use --ttl {ttl}s or more."
    )


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def _s(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.3f} s"


def format_report(report: dict[str, Any]) -> str:
    rtt = report.get("keepalive_rtt") or {}
    lines = [
        f"leaderjob selftest: etcd {report['etcd_version']} at {','.join(report['endpoints'])}, "
        f"TTL {report['ttl']:g}s"
        + (
            f", {report['etcd_members']} member{'s' if report['etcd_members'] != 1 else ''}"
            if report.get("etcd_members")
            else ""
        ),
        f"  keepalive round trip: p50 {_ms(rtt.get('p50'))}, p90 {_ms(rtt.get('p90'))}, "
        f"p99 {_ms(rtt.get('p99'))}, max {_ms(rtt.get('max'))} (n={rtt.get('n', 0)})",
    ]
    for s in report["scenarios"]:
        what = "frozen (no keepalives)" if s["fault"] == "freeze" else "cut from etcd (blackhole)"
        lines.append(
            f"  leader {what}: its job was killed {_s(s['job_died_after'])} after the fault, "
            f"etcd released its key after {_s(s['key_deleted_after'])}: "
            f"safety margin {_s(s['margin_seconds'])}; failover {_s(s['failover_seconds'])} "
            f"(token {s['old_token']} → {s['new_token']})"
        )
    c = report.get("cleanup") or {}
    if c:
        state = "nothing left" if c.get("clean") else "LEFT OVER: see advice"
        lines.append(
            f"  cleanup: {c['leases_created']} leases revoked, {c['keys_deleted_at_end']} keys "
            f"deleted under {c['prefix']}: {state}"
        )
    margins = [s["margin_seconds"] for s in report["scenarios"] if s["margin_seconds"] is not None]
    least = f"{min(margins):.3f}s" if margins else "n/a"
    summary = {
        "PASS": f"the old job was always dead before etcd released its key (least margin {least})",
        "WARN": f"safe in this run (least margin {least}), but see the advice",
        "FAIL": "the safety margin was not positive or could not be measured",
    }[report["verdict"]]
    lines.append(f"verdict: {report['verdict']}: {summary}")
    lines += [f"  advice: {a}" for a in report["advice"]]
    return "\n".join(lines)
