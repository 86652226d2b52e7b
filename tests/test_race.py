"""Many hosts signalling the same runs at once while workers execute them: every status change
stays inside the table, no node starts once its run was cancelled, and each run ends as its last
accepted signal says."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from orchestrator import control, definitions, engine
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.state import Action, NodeStatus, Outcome, RunStatus, transition
from tests.conftest import REPO, WorkerPool, subprocess_env, wait_for

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]

RUNS = 6
SENDERS = 3
SENDING_SECONDS = 3.0

#: One sending host: random pause/resume/cancel to random runs; prints the accepted signals.
SENDER = """
import json, random, sys, time

import django

django.setup()

from orchestrator import control
from orchestrator.errors import TransitionRefused
from orchestrator.state import Action

run_ids, start_at, seconds, seed = json.loads(sys.argv[1])
rng = random.Random(seed)
# Cancels are rare, so that runs live long enough to be paused and resumed many times.
actions = [Action.PAUSE] * 10 + [Action.RESUME] * 10 + [Action.CANCEL]
accepted = []
time.sleep(max(0.0, start_at - time.time()))
while time.time() < start_at + seconds:
    run_id, action = rng.choice(run_ids), rng.choice(actions)
    try:
        result = control.signal(run_id, action)
    except TransitionRefused:
        pass
    else:
        accepted.append([run_id, str(action), str(result.previous), str(result.status)])
    time.sleep(rng.uniform(0.005, 0.06))
print(json.dumps(accepted))
"""

REQUESTS = {
    RunEvent.PAUSE_REQUESTED: Action.PAUSE,
    RunEvent.CANCEL_REQUESTED: Action.CANCEL,
    RunEvent.RESUMED: Action.RESUME,
}
#: Effects the engine records, and the steps of the table that may lead to each.
EFFECTS = {
    RunEvent.PAUSED: (RunStatus.PAUSED, (Action.SETTLE,)),
    RunEvent.CANCELLED: (RunStatus.CANCELLED, (Action.SETTLE, Action.COMPLETE, Action.FAIL)),
    RunEvent.COMPLETED: (RunStatus.COMPLETED, (Action.COMPLETE,)),
    RunEvent.FAILED: (RunStatus.FAILED, (Action.FAIL,)),
}
SETTLED = (RunStatus.COMPLETED, RunStatus.CANCELLED, RunStatus.PAUSED)


def four_waits() -> definitions.Definition:
    ids = ["w1", "w2", "w3", "w4"]
    return definitions.parse(
        {
            "name": "race",
            "nodes": [
                {
                    "id": node_id,
                    "type": "wait",
                    "config": {"seconds": 0.2},
                    "next": ids[i + 1] if i + 1 < len(ids) else None,
                }
                for i, node_id in enumerate(ids)
            ],
        }
    )


def replay(run_id: int) -> tuple[RunStatus, list[str]]:
    """Walk the run's event trail through the table: the status it ends in, and every step the
    table does not allow."""
    status, problems, due = RunStatus.QUEUED, [], None
    for event in RunEvent.objects.filter(run_id=run_id).order_by("id"):
        if event.kind in REQUESTS:
            previous = RunStatus(event.details["previous"])
            new = RunStatus(event.details["status"])
            if status == RunStatus.QUEUED and previous == RunStatus.RUNNING:
                status = RunStatus.RUNNING  # a worker claimed a node (no event for that)
            target = transition(previous, REQUESTS[event.kind])
            expected = previous if target is Outcome.NOOP else target
            if (
                previous != status
                or new != expected
                or event.details.get("noop", False) != (target is Outcome.NOOP)
            ):
                problems.append(f"event {event.pk} {event.kind} {event.details} from {status}")
            status = new
            due = (
                new if new in (RunStatus.PAUSED, RunStatus.CANCELLED) and previous != new else None
            )
        elif event.kind in EFFECTS:
            reached, steps = EFFECTS[event.kind]
            if due == reached:  # the request's own effect, recorded in the same transaction
                due = None
                continue
            starts = [status, RunStatus.RUNNING] if status == RunStatus.QUEUED else [status]
            if not any(transition(s, step) == reached for s in starts for step in steps):
                problems.append(f"event {event.pk} {event.kind} from {status}")
            status = reached
    return status, problems


def last_request(run_id: int) -> RunEvent | None:
    return RunEvent.objects.filter(run_id=run_id, kind__in=list(REQUESTS)).order_by("-id").first()


def test_random_signals_from_many_hosts_keep_every_run_inside_the_table(
    workers: WorkerPool, tmp_path: Path
):
    workers.start("w1")
    workers.start("w2")
    definition = four_waits()
    runs = [engine.create_run(definition, payload={"n": n}) for n in range(RUNS)]
    run_ids = [run.pk for run in runs]

    script = tmp_path / "sender.py"
    script.write_text(SENDER)
    env = subprocess_env(
        DJANGO_SETTINGS_MODULE="orchestrator.settings",
        CELERY_BROKER_URL=workers.broker.url,
    )
    start_at = time.time() + 2.0  # the senders boot meanwhile, and all begin together
    senders = [
        subprocess.Popen(
            [sys.executable, str(script), json.dumps([run_ids, start_at, SENDING_SECONDS, seed])],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(SENDERS)
    ]
    time.sleep(max(0.0, start_at - time.time()))
    for run in runs:
        engine.dispatch_run(run)
    accepted: list[list] = []
    for sender in senders:
        out, err = sender.communicate(timeout=60)
        assert sender.returncode == 0, err
        accepted += json.loads(out)

    # Every accepted signal is in the trail once, as the change it made; refused ones are not.
    assert {"pause", "resume"} <= {action for _, action, _, _ in accepted}
    requests = RunEvent.objects.filter(run_id__in=run_ids, kind__in=list(REQUESTS))
    assert Counter(
        (e.run_id, str(REQUESTS[e.kind]), e.details["previous"], e.details["status"])
        for e in requests
    ) == Counter(tuple(signal) for signal in accepted)

    def all_settled() -> bool:
        return not PipelineRun.objects.filter(pk__in=run_ids).exclude(status__in=SETTLED).exists()

    wait_for(all_settled, timeout=60)
    for run in PipelineRun.objects.filter(pk__in=run_ids):
        replayed, problems = replay(run.pk)
        assert problems == [], f"run {run.pk}"
        assert replayed == run.status, f"run {run.pk}"
        last = last_request(run.pk)
        if run.status == RunStatus.CANCELLED:
            assert last is not None and last.kind == RunEvent.CANCEL_REQUESTED, f"run {run.pk}"
        elif run.status == RunStatus.PAUSED:
            assert last is not None and last.kind == RunEvent.PAUSE_REQUESTED, f"run {run.pk}"
        else:
            assert not run.events.filter(kind=RunEvent.CANCEL_REQUESTED).exists(), run.pk

    # Resume what the senders left paused: every run then ends, and no cancelled run moved again.
    for run in PipelineRun.objects.filter(pk__in=run_ids, status=RunStatus.PAUSED):
        control.signal(run.pk, Action.RESUME)
    wait_for(
        lambda: (
            not PipelineRun.objects.filter(pk__in=run_ids)
            .exclude(status__in=[RunStatus.COMPLETED, RunStatus.CANCELLED])
            .exists()
        ),
        timeout=60,
    )
    for run in PipelineRun.objects.filter(pk__in=run_ids):
        replayed, problems = replay(run.pk)
        assert problems == [] and replayed == run.status, f"run {run.pk}"
        nodes = list(run.node_runs.order_by("position"))
        # A node ran once, or never (made ready, then cancelled with its run before it started).
        assert all(
            n.attempt == 1 or (n.attempt, n.status) == (0, NodeStatus.CANCELLED) for n in nodes
        ), [(n.node_id, n.status, n.attempt) for n in nodes]
        if run.status == RunStatus.COMPLETED:
            assert [(n.node_id, n.status) for n in nodes] == [
                (f"w{i}", NodeStatus.COMPLETED) for i in range(1, 5)
            ]
            continue
        assert last_request(run.pk).kind == RunEvent.CANCEL_REQUESTED
        cancel = (
            run.events.filter(kind=RunEvent.CANCEL_REQUESTED, details__noop__isnull=True)
            .order_by("id")
            .first()
        )
        started = [n.started_at for n in NodeRun.objects.filter(run=run, attempt__gt=0)]
        assert all(at < cancel.at for at in started), f"a node of run {run.pk} started late"
        assert not run.node_runs.filter(status=NodeStatus.RUNNING).exists()
