"""The hand-written mutations (``run.py``): each breaks one promise of the process and driver
code, or of a caller of a pure rule, with the tests that must then fail.

``old`` must occur exactly once in ``file`` (else the mutation is reported "n/a": the code moved
on and the mutation must be rewritten). Keep ``tests`` to the cheapest tests that defend the
promise, so that the whole run stays in minutes. A new promise gets a mutation here in the same
commit as its test.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    name: str
    promise: str  # the property it breaks (S1-S6, L1-L5)
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


GIVE_BACK = "tests/unit/test_give_back.py"
SPREAD_DRIVER = "tests/unit/test_spread_driver.py"
SEND_TIME = "tests/unit/test_send_time.py"
CALLERS = "tests/unit/test_callers.py"

MUTATIONS: tuple[Mutation, ...] = (
    # -- claims made ahead and their give-back (S3, L2) -------------------------------------
    Mutation(
        "give_back_unfenced",
        "S3",
        "leaderjob/records.py",
        """        return self.store.guarded_put(
            own_key,
            token,
            [(self.last_slot_key, previous.encode())],
            deletes=[self.slot_key(slot)],
            timeout=timeout,
        )""",
        """        self.store.delete(self.slot_key(slot), timeout=timeout)
        self.store.put(self.last_slot_key, previous.encode(), timeout=timeout)
        return True""",
        (GIVE_BACK,),
    ),
    Mutation(
        "give_back_refused_unrecorded",
        "L3",
        "leaderjob/daemon/scheduling.py",
        "            self._not_run(slot.id, slot.fire_time, "
        '"missed", "skipped_leaving", tenure.token)\n',
        "",
        (GIVE_BACK,),
    ),
    Mutation(
        "give_back_of_a_started_slot",
        "S3",
        "leaderjob/daemon/scheduling.py",
        """        ahead = tenure.ahead
        tenure.ahead = None
""",
        """        ahead = tenure.ahead
""",
        (GIVE_BACK,),
    ),
    # -- the election's driver hands the machine its send times and token (S6, S2) ----------
    Mutation(
        "keepalive_reply_time",
        "S6",
        "leaderjob/election/group.py",
        "self.machine.renewed(sent_at, ttl, now)",
        "self.machine.renewed(now, ttl, now)",
        (SEND_TIME,),
    ),
    Mutation(
        "grant_reply_time",
        "S6",
        "leaderjob/election/group.py",
        "self.machine.granted(grant.lease_id, grant.ttl, sent_at)",
        "self.machine.granted(grant.lease_id, grant.ttl, self.clock.monotonic())",
        (SEND_TIME,),
    ),
    Mutation(
        "confirm_reply_time",
        "S6",
        "leaderjob/election/group.py",
        "self.machine.confirmed(sent_at)",
        "self.machine.confirmed(now)",
        (SEND_TIME,),
    ),
    Mutation(
        "token_not_the_create_revision",
        "S2",
        "leaderjob/election/group.py",
        "self.machine.won(self.revisions[job], now, job)",
        "self.machine.won(self.revisions[job] + 1, now, job)",
        (SEND_TIME,),
    ),
    # -- spreading's driver hands the rule the idle set and the member count (L2) ------------
    Mutation(
        "spread_every_led_job_idle",
        "L2",
        "leaderjob/daemon/spreading.py",
        "idle = frozenset(n for n in leading if runners[n].idle)",
        "idle = leading",
        (SPREAD_DRIVER,),
    ),
    Mutation(
        "spread_members_never_counted",
        "L2",
        "leaderjob/daemon/spreading.py",
        "self.members = max(1, len({k.lease_id for k in reading.keys}))",
        "self.members = 1",
        (SPREAD_DRIVER,),
    ),
    # -- the runner hands the run its fence and its deadline (S1, S2, S6) ---------------------
    Mutation(
        "run_token_not_the_keys_revision",
        "S2",
        "leaderjob/daemon/runner.py",
        "LEADERJOB_FENCING_TOKEN=str(token),",
        "LEADERJOB_FENCING_TOKEN=str(token + 1),",
        (CALLERS,),
    ),
    Mutation(
        "run_key_not_the_leaders",
        "S1",
        "leaderjob/daemon/runner.py",
        'LEADERJOB_LEADER_KEY=self.seat.key or "",',
        'LEADERJOB_LEADER_KEY=(self.seat.key or "").rsplit("/", 1)[0],',
        (CALLERS,),
    ),
    Mutation(
        "run_handed_a_later_deadline",
        "S6",
        "leaderjob/daemon/runner.py",
        "            deadline=deadline,\n",
        "            deadline=deadline + self.s.timing.grace,\n",
        (CALLERS,),
    ),
    Mutation(
        "run_deadline_never_extended",
        "S6",
        "leaderjob/daemon/runner.py",
        "active.run.extend(deadline)",
        "pass",
        (CALLERS,),
    ),
    Mutation(
        "grant_asked_ttl_not_granted",
        "S6",
        "leaderjob/election/group.py",
        "grant.ttl, sent_at)",
        "self.timing.ttl, sent_at)",
        (CALLERS,),
    ),
    # -- the planner is handed the job's settings (L3) ----------------------------------------
    Mutation(
        "planner_jitter_dropped",
        "L3",
        "leaderjob/daemon/runner.py",
        "jitter=settings.jitter,",
        "jitter=0.0,",
        (CALLERS,),
    ),
    Mutation(
        "planner_starting_deadline_dropped",
        "L3",
        "leaderjob/daemon/runner.py",
        "if settings.starting_deadline is None",
        "if True",
        (CALLERS,),
    ),
)
