"""The Django admin: no HTTP 500 anywhere an operator clicks, read-only runs and events,
timestamps to the second, definitions checked as the CLI checks them, and no pipeline executed
inside a web request."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from orchestrator import control, definitions, engine
from orchestrator.models import NodeRun, PipelineDefinition, PipelineRun
from orchestrator.state import Action, NodeStatus, RunStatus

pytestmark = pytest.mark.django_db(transaction=True)

WAITS = {
    "name": "admin-waits",
    "nodes": [
        {"id": "a", "type": "wait", "config": {"seconds": 0}, "next": "b"},
        {"id": "b", "type": "wait", "config": {"seconds": 0}},
    ],
}


@pytest.fixture
def ops(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("ops", "ops@example.com", "pw"))
    return client


def paused_run() -> PipelineRun:
    run = engine.create_run(definitions.parse(WAITS), payload={})
    control.signal(run.pk, Action.PAUSE)
    return run


def test_runs_and_events_cannot_be_added_changed_or_deleted_but_can_be_read(ops) -> None:
    run = paused_run()
    for model in ("pipelinerun", "runevent"):
        assert ops.get(reverse(f"admin:orchestrator_{model}_add")).status_code == 403
        assert ops.get(reverse(f"admin:orchestrator_{model}_changelist")).status_code == 200
    page = ops.get(reverse("admin:orchestrator_pipelinerun_change", args=[run.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html and "deletelink" not in html
    assert (
        ops.get(reverse("admin:orchestrator_pipelinerun_delete", args=[run.pk])).status_code == 403
    )
    # Timestamps to the second, so that the trail of events can be followed.
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", html)
    listing = ops.get(reverse("admin:orchestrator_runevent_changelist")).content.decode()
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", listing)
    assert "Add pipeline run" not in ops.get(reverse("admin:index")).content.decode()


@pytest.mark.parametrize(
    ("config", "said"),
    [
        (json.dumps({"nodes": [{"id": "a", "type": "ai"}]}), "Node &#x27;a&#x27; has unknown type"),
        ('{"nodes": [{"id": "a", "type": "wait", "timeout_seconds": NaN}]}', "NaN is not a number"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ('{"nodes": ' + "1" * 5000 + "}", "an integer has too many digits"),
        ("{", "Invalid JSON in the config"),
    ],
)
def test_the_definition_form_refuses_what_validate_refuses(ops, config: str, said: str) -> None:
    form = {"name": "bad", "description": "", "config": config, "version": 1, "is_active": "on"}
    response = ops.post(reverse("admin:orchestrator_pipelinedefinition_add"), form)
    assert response.status_code == 200
    assert said in response.content.decode()
    assert not PipelineDefinition.objects.exists()


def test_the_definition_form_saves_a_valid_config(ops) -> None:
    form = {"name": "good", "description": "", "config": json.dumps(WAITS), "version": 1}
    response = ops.post(reverse("admin:orchestrator_pipelinedefinition_add"), form)
    assert response.status_code == 302
    assert PipelineDefinition.objects.get().config == WAITS


def resume_from_admin(ops, run: PipelineRun) -> list[str]:
    response = ops.post(
        reverse("admin:orchestrator_pipelinerun_changelist"),
        {"action": "resume_runs", "_selected_action": [run.pk]},
        follow=True,
    )
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def never_started() -> bool:
    """The paused run's entry node is still only ready: no attempt of any node began."""
    return list(NodeRun.objects.values_list("node_id", "status", "attempt")) == [
        ("a", NodeStatus.QUEUED, 0)
    ]


def test_resume_without_a_broker_is_refused_instead_of_running_in_the_request(ops) -> None:
    run = paused_run()
    [said] = resume_from_admin(ops, run)
    assert said.startswith("Cannot resume runs from the admin: no broker is configured")
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.PAUSED
    assert never_started()


def test_resume_with_a_broker_queues_the_rest_for_workers(ops, broker) -> None:
    run = paused_run()
    [said] = resume_from_admin(ops, run)
    assert said == f"Pipeline run {run.pk} has been resumed: node 'a' is queued."
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.RUNNING
    assert never_started()  # nothing ran in the web request
