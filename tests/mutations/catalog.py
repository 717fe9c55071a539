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
    #: Why the mutation cannot change a result today, if it cannot: its survival is then
    #: reported ("equivalent") and does not fail the run. Recheck the reason when the code moves.
    equivalent: str = ""


GIVE_BACK = "tests/unit/test_give_back.py"
SPREAD_DRIVER = "tests/unit/test_spread_driver.py"
SEND_TIME = "tests/unit/test_send_time.py"
CALLERS = "tests/unit/test_callers.py"
SCHEDULE = "tests/unit/test_daemon_schedule.py"
UNKNOWN_CLAIMS = "tests/unit/test_unknown_claims.py"
CONTRACT = "tests/integration/test_store_contract.py"

MUTATIONS: tuple[Mutation, ...] = (
    # -- claims made ahead and their give-back (S3, L2) -------------------------------------
    Mutation(
        "give_back_unfenced",
        "S3",
        "leaderjob/history/records.py",
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
        "leaderjob/daemon/ahead.py",
        "            self.history.not_run(slot.id, slot.fire_time, "
        '"missed", "skipped_leaving", tenure.token)\n',
        "",
        (GIVE_BACK,),
    ),
    Mutation(
        "give_back_under_another_token",
        "S3",
        "leaderjob/daemon/ahead.py",
        """                ok = self.job.data.unclaim_slot(
                    own,
                    tenure.token,""",
        """                ok = self.job.data.unclaim_slot(
                    own,
                    tenure.token + 1,""",
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
        "leaderjob/election/group_lease.py",
        "self.machine.renewed(sent_at, ttl, now)",
        "self.machine.renewed(now, ttl, now)",
        (SEND_TIME,),
    ),
    Mutation(  # the same mutation, judged by the stateful search alone: it must find it
        "keepalive_reply_time_found_by_search",
        "S6",
        "leaderjob/election/group_lease.py",
        "self.machine.renewed(sent_at, ttl, now)",
        "self.machine.renewed(now, ttl, now)",
        ("tests/unit/test_election_stateful.py",),
    ),
    Mutation(
        "grant_reply_time",
        "S6",
        "leaderjob/election/group_lease.py",
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
        "idle = frozenset(n for n in leading if current[n].idle)",
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
        "leaderjob/daemon/runs.py",
        "LEADERJOB_FENCING_TOKEN=str(token),",
        "LEADERJOB_FENCING_TOKEN=str(token + 1),",
        (CALLERS,),
    ),
    Mutation(
        "run_key_not_the_leaders",
        "S1",
        "leaderjob/daemon/runs.py",
        'LEADERJOB_LEADER_KEY=seat.key or "",',
        'LEADERJOB_LEADER_KEY=(seat.key or "").rsplit("/", 1)[0],',
        (CALLERS,),
    ),
    Mutation(
        "run_handed_a_later_deadline",
        "S6",
        "leaderjob/daemon/runs.py",
        "            deadline=deadline,\n",
        "            deadline=deadline + s.timing.grace,\n",
        (CALLERS,),
    ),
    Mutation(
        "run_deadline_never_extended",
        "S6",
        "leaderjob/daemon/runs.py",
        "active.run.extend(deadline)",
        "pass",
        (CALLERS,),
    ),
    Mutation(
        "run_waits_past_D_minus_grace",
        "S6",
        "leaderjob/daemon/runs.py",
        "            wait=term_at - now,\n",
        "            wait=term_at - now + s.timing.grace,\n",
        ("tests/unit/test_daemon_runs.py",),
    ),
    Mutation(
        "grant_asked_ttl_not_granted",
        "S6",
        "leaderjob/election/group_lease.py",
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
    # -- leaving: stop the run, give back, resign, revoke (L2, S6) ----------------------------
    Mutation(
        "leave_resigns_while_the_run_goes_on",
        "S6",
        "leaderjob/daemon/applier.py",
        "            done = done and not r.runs\n",
        "            done = done\n",
        (CALLERS,),
    ),
    Mutation(
        "leave_without_revoke",
        "L2",
        "leaderjob/daemon/leaving.py",
        "        # our key to go (L2); our runs are dead, so it may go now (S1).\n"
        "        self.session.release()\n",
        "        # our key to go (L2); our runs are dead, so it may go now (S1).\n",
        (CALLERS,),
    ),
    # -- the loop: the deadline first (S6) ----------------------------------------------------
    Mutation(
        "cycle_deadline_not_checked_first",
        "S6",
        "leaderjob/daemon/loop.py",
        """        t = self.elector.check(self.clock.monotonic())
        if t is not None:
            self._on_transition(t)
        # 2.""",
        "        # 2.",
        (CALLERS,),
    ),
    # -- slots: one claim, one run (S3) -------------------------------------------------------
    Mutation(
        "claim_without_absent_slot",
        "S3",
        "leaderjob/history/records.py",
        "absent=(key, self.suspended_key) if run else (key,),",
        "absent=(self.suspended_key,) if run else (),",
        (SCHEDULE, "tests/unit/test_daemon_jobs.py"),
    ),
    Mutation(
        "fire_ignores_an_older_claim",
        "S3",
        "leaderjob/daemon/scheduling.py",
        "if tenure.last_claimed is not None and slot.fire_time <= tenure.last_claimed:",
        "if False:",
        (SCHEDULE, UNKNOWN_CLAIMS),
        equivalent="S3 holds without it in every test: a second claim of the slot is refused "
        "at etcd (the claim's Txn requires the slot key absent); the check matters only for a "
        "slot whose claim key was pruned while state/last_slot still names it, which no test "
        "builds",
    ),
    Mutation(
        "catch_up_ignores_the_newest_claim",
        "S3",
        "leaderjob/daemon/catchup.py",
        "plan = self.job.planner.begin_tenure(start, wall)",
        "plan = self.job.planner.begin_tenure(None, wall)",
        (SCHEDULE, UNKNOWN_CLAIMS),
    ),
    # -- the fences (S1) ------------------------------------------------------------------------
    Mutation(
        "etcd_guard_any_revision",
        "S1",
        "leaderjob/election/etcd_wire.py",
        "for k, rev in [(w.guard_key, w.guard_revision), *((k, 0) for k in w.absent)]",
        "for k, rev in [*((k, 0) for k in w.absent)]",
        (CONTRACT,),
    ),
    Mutation(
        "etcd_fence_refusal_ignored",
        "S1",
        "leaderjob/fencing/etcd.py",
        """        if not applied:
            raise StaleToken(self.leader_key, self.token)""",
        """        if not applied:
            pass""",
        ("tests/unit/test_fencing_etcd.py",),
    ),
    Mutation(
        "sql_fence_accepts_one_lower",
        "S1",
        "leaderjob/fencing/sql.py",
        '"WHERE fence.token <= EXCLUDED.token "',
        '"WHERE fence.token <= EXCLUDED.token + 1 "',
        ("tests/unit/test_fencing_sql.py",),
    ),
    Mutation(
        "http_fence_accepts_one_lower",
        "S1",
        "leaderjob/fencing/http.py",
        "            if token < mark:",
        "            if token < mark - 1:",
        ("tests/unit/test_fencing_http.py",),
    ),
    # -- the guardian process (S6) --------------------------------------------------------------
    Mutation(
        "guardian_kills_after_D",
        "S6",
        "leaderjob/guard/guardian.py",
        "kill_at = run.deadline - min(KILL_RESERVE, run.grace / 4)",
        "kill_at = run.deadline + 0.5",
        ("tests/unit/test_guardian.py",),
    ),
    Mutation(
        "guardian_ignores_the_daemon_gone",
        "S6",
        "leaderjob/guard/guardian.py",
        '        self.table.kill_everything("daemon_gone")',
        "        pass",
        ("tests/unit/test_guardian.py",),
    ),
    Mutation(
        "guardian_no_check_before_exec",
        "S6",
        "leaderjob/guard/guardian_spawn.py",
        "        if not check():\n            raise Refused\n",
        "",
        ("tests/unit/test_guardian.py",),
    ),
    Mutation(
        "guardian_starts_before_the_extension_behind_them",
        "S6",
        "leaderjob/guard/guardian.py",
        "                self.handle_all(msgs)",
        # Every message in arrival order, one at a time: the same handling, only the order
        # (an extension behind a burst of starts waits for them) differs.
        "                for msg in msgs:\n                    sent: list[Any] = []\n"
        "                    self.handle(msg, sent)\n                    self.signal(sent)\n"
        "                    if 'start' in msg:\n                        self.deadlines()",
        ("tests/unit/test_guardian.py",),
    ),
    Mutation(
        "guardian_drops_a_stop_that_came_with_its_start",
        "S6",
        "leaderjob/guard/guardian.py",
        "                later.setdefault(key, []).append(msg)",
        "                pass",
        ("tests/unit/test_guardian.py",),
    ),
    Mutation(
        "guardian_forks_a_whole_burst_before_a_deadline_due_meanwhile",
        "S6",
        "leaderjob/guard/guardian.py",
        "            if self.now() >= self.due_at:\n"
        "                self.deadlines()\n\n        starts",
        "            pass\n\n        starts",
        ("tests/unit/test_guardian.py",),
    ),
    Mutation(
        "a_key_made_again_is_taken_for_ours",
        "S2",
        "leaderjob/election/group.py",
        "verdict = judge(standing, self.revisions[job], lease.lease_id, leading=leading)",
        "verdict = judge(standing, standing.own.create_revision if standing.own else 0, "
        "lease.lease_id, leading=leading)",
        ("tests/unit/test_group.py", "tests/unit/test_elector.py",
         "tests/unit/test_election_stateful.py"),
    ),
    Mutation(
        "a_key_off_our_lease_is_taken_for_ours",
        "S2",
        "leaderjob/election/group.py",
        "verdict = judge(standing, self.revisions[job], lease.lease_id, leading=leading)",
        "verdict = judge(standing, self.revisions[job], "
        "standing.own.lease_id if standing.own else 0, leading=leading)",
        ("tests/unit/test_group.py", "tests/unit/test_elector.py",
         "tests/unit/test_election_stateful.py"),
    ),
    Mutation(
        "a_stray_key_a_read_shows_is_left_in_its_queue",
        "L1",
        "leaderjob/election/group.py",
        "            self.candidacies.strays_in(standing, lease.lease_id)\n",
        "",
        ("tests/unit/test_group.py", "tests/unit/test_elector.py"),
    ),
    Mutation(
        "a_key_off_our_lease_is_taken_at_its_create",
        "S2",
        "leaderjob/election/candidacies.py",
        "            if info.lease_id != lease_id:",
        "            if False:",
        ("tests/unit/test_group.py", "tests/unit/test_elector.py"),
    ),
    # -- jobs due at once: claims together, starts requested before any answer (S3, S1, S6) --
    Mutation(
        "batch_of_unknown_outcome_taken_as_claimed",
        "S3",
        "leaderjob/daemon/together.py",
        "outcomes = [exc] * len(batch)",
        "outcomes = [True] * len(batch)",
        ("tests/unit/test_claims_together.py",),
    ),
    Mutation(
        "batched_claim_without_the_suspend_compare",
        "S3",
        "leaderjob/daemon/claims.py",
        "doc, run=True, deletes=carry)",
        "doc, run=False, deletes=carry)",
        ("tests/unit/test_claims_together.py",),
    ),
    Mutation(
        "start_not_answered_not_tracked",
        "S1",
        "leaderjob/daemon/runs.py",
        "        self.active.append(active)\n        start = _Starting(",
        "        start = _Starting(",
        ("tests/unit/test_starts_together.py",),
    ),
    Mutation(
        "every_start_request_in_the_guardian_s_pipe_at_once",
        "S6",
        "leaderjob/daemon/starts.py",
        "while self.waiting and len(self.in_flight) < IN_FLIGHT:",
        "while self.waiting:",
        ("tests/unit/test_starts_together.py",),
    ),
    # -- a burst and many runs at once: the joints of this round's cuts ------------------------
    Mutation(
        "each_run_due_signalled_with_its_own_look",
        "S6",
        "leaderjob/guard/guardian_runs.py",
        """        for run, sig, _ in todo:
            self._signal_group(run, sig)
        sight = self.sight()
        for run, sig, _ in todo:
            self._signal_members(run, sig, sight, strays=False)""",
        """        for run, sig, _ in todo:
            self._signal_group(run, sig)
            self._signal_members(run, sig, self.sight(), strays=False)""",
        ("tests/unit/test_guardian.py",),
    ),
    Mutation(
        "every_job_visited_in_every_pass",
        "L4",
        "leaderjob/daemon/attention.py",
        "        chosen = [j for j in names if j in news or wake.get(j, -math.inf) <= now]",
        "        chosen = names",
        ("tests/unit/test_attention.py",),
    ),
    Mutation(
        "a_job_s_wake_up_time_recorded_late",
        "L3",
        "leaderjob/daemon/group_pass.py",
        "                a.woke(name, r.next_wakeup(now, r.seat.leading and staying))",
        "                a.woke(name, r.next_wakeup(now, r.seat.leading and staying) + 0.3)",
        ("tests/unit/test_attention.py",),
    ),
    Mutation(
        "a_run_s_report_not_news_for_its_job",
        "L3",
        "leaderjob/daemon/group_pass.py",
        """            if news:
                self.attention.note(name)""",
        """            if False:
                self.attention.note(name)""",
        ("tests/unit/test_attention.py",),
    ),
    Mutation(
        "bookkeeping_ignores_the_starts_on_their_way",
        "L3",
        "leaderjob/daemon/session.py",
        "        if self.starts_pending():",
        "        if False:",
        ("tests/unit/test_bookkeeping_yields.py",),
    ),
    Mutation(
        "a_run_s_d_extended_only_once",
        "S6",
        "leaderjob/daemon/runs.py",
        "        moved = (deadline, leading) != self._reconciled",
        "        moved = self._reconciled == (None, False)",
        ("tests/unit/test_callers.py",),
    ),
    Mutation(
        "a_reload_does_not_wait_for_the_slot_claimed_ahead",
        "S3",
        "leaderjob/daemon/applier.py",
        """            if self._between_runs(name, "reconfigured" if c.stop else None) and not (
                self._claimed_ahead(name)
            ):""",
        """            if self._between_runs(name, "reconfigured" if c.stop else None):""",
        ("tests/unit/test_reload_ahead.py",),
    ),
    # -- the in-process singleton hands its run the token (S2) -------------------------------
    Mutation(
        "singleton_run_token_off",
        "S2",
        "leaderjob/inprocess/singleton_tenure.py",
        """            scheduled,
            token,
            uuid.uuid4().hex[:12],""",
        """            scheduled,
            token + 1,
            uuid.uuid4().hex[:12],""",
        ("tests/unit/test_singleton_callers.py",),
    ),
)
