"""The finally steps: what runs once every main step is terminal, and how the run then ends.

The main steps' end is recorded once as the run's `Outcome` (`decide` does it); from then on
the main steps are only read. Finally steps run as under `onFailure: continue`, on their own
budget counted from the outcome, unaffected by a stop unless `shutdown.finally` is `Skip`. The
run ends with its outcome, except that a failed finally step fails an outcome of `Succeeded`
(`FinallyFailed`), and a stop that skipped them cancels it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from runctl.machine import dag
from runctl.machine.failures import MAX_MESSAGE
from runctl.machine.model import Observed, Outcome, RunSpec
from runctl.machine.phases import (
    FinallyPolicy,
    Mode,
    Reason,
    RunPhase,
    StepPhase,
    StopTrigger,
    Waiting,
)
from runctl.machine.plan import (
    Clock,
    Plan,
    Stop,
    Tracks,
    first_failure,
    gate_verdicts,
    go_on,
    stopped,
    timed_out,
)


def finally_stop(spec: RunSpec, stop: Stop | None) -> Stop | None:
    """The run's stop as it governs the finally steps: only when `shutdown.finally` is Skip."""
    return stop if spec.shutdown_finally is FinallyPolicy.SKIP else None


def plan_finally(observed: Observed, main: Tracks, finals: Tracks, clock: Clock,
                 outcome: Outcome, *, stop: Stop | None) -> Plan:
    """The finally ladder, first rule that holds: a stop that skips them; their deadline;
    otherwise they go on. `clock` is theirs; `stop` is the run's (the run shows Stopping
    while they go)."""
    spec, now = observed.spec, clock.now
    skipping = finally_stop(spec, stop)
    if skipping is not None:
        p = stopped(finals, now, skipping, spec.grace_period_seconds)
    elif clock.deadline is not None and now >= clock.deadline:
        p = timed_out(finals, "the finally steps' deadline",
                      f"the finally steps did not finish within "
                      f"{spec.finally_timeout_seconds}s", now)
    else:
        order = dag.topological_order(spec.finally_steps)
        gated = gate_verdicts(observed, {**main, **finals}, order, Mode.BATCH, now)
        p = go_on(observed, gated, order, clock, Mode.BATCH)
    tracks = {**main, **{name: p.tracks[name] for name in finals}}
    if any(not tracks[name].terminal for name in finals):
        phase = RunPhase.STOPPING if stop is not None else RunPhase.RUNNING
        return replace(p, tracks=tracks, phase=phase, reason=Waiting.RUNNING_FINALLY,
                       message=_running(finals, tracks, outcome))
    budget_over = (skipping is None and clock.deadline is not None
                   and now >= clock.deadline)
    return _verdict(tracks, finals, outcome, p.trigger, skipped=skipping is not None,
                    budget_over=budget_over)


def _running(finals: Tracks, tracks: Tracks, outcome: Outcome) -> str:
    going = sum(1 for name in finals if not tracks[name].terminal)
    return (f"running finally steps ({going} of {len(finals)} not done); the main steps "
            f"ended {outcome.phase} ({outcome.reason}): {outcome.message}")[:MAX_MESSAGE]


def _verdict(tracks: Tracks, finals: Tracks, outcome: Outcome, trigger: StopTrigger | None,
             *, skipped: bool, budget_over: bool) -> Plan:
    """Every finally step is terminal: the run ends as its outcome says, except an outcome of
    Succeeded, which a stop that skipped them turns Canceled and a failed one Failed. Once
    their budget is over, one it cut off before it ran (canceled: under `finally: Run`
    nothing else cancels a finally step) is as failed as one it cut off running."""
    failed = first_failure({name: tracks[name] for name in finals})
    if failed is None and budget_over:
        failed = next((tracks[name] for name in finals
                       if tracks[name].state.phase is StepPhase.CANCELED), None)
    phase, reason, message = outcome.phase, outcome.reason, outcome.message
    if outcome.phase is RunPhase.SUCCEEDED and skipped:
        phase, reason = RunPhase.CANCELED, Reason.CANCELED
        message = "stopped on request while the finally steps ran"
    elif outcome.phase is RunPhase.SUCCEEDED and failed is not None:
        phase, reason = RunPhase.FAILED, Reason.FINALLY_FAILED
        message = (f"finally step {failed.name} ended {failed.state.phase} "
                   f"({failed.state.reason}): {failed.state.message}")[:MAX_MESSAGE]
    return Plan(tracks, phase, reason, message, trigger or StopTrigger.ALL_STEPS_TERMINAL)


def finally_clock(observed: Observed, outcome: Outcome, now: dt.datetime,
                  stop: Stop | None) -> Clock:
    """The finally steps' timers: their own deadline, counted from the outcome, and the grace
    period of the run's stop when it skips them."""
    spec = observed.spec
    deadline = outcome.decided_at + dt.timedelta(seconds=spec.finally_timeout_seconds)
    skipping = finally_stop(spec, stop)
    return Clock(now, deadline, skipping.grace_until if skipping is not None else None)
