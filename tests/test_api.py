"""The HTTP API over real HTTP, against ``orchestrator serve`` in a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import engine, tokens
from orchestrator.definitions import parse
from orchestrator.models import NodeRun, PipelineDefinition, PipelineRun
from orchestrator.state import NodeStatus, RunStatus
from orchestrator.web import access
from tests.conftest import REPO, ApiUsers, WorkerPool, free_port, subprocess_env, wait_for
from tests.served import Server

pytestmark = pytest.mark.django_db(transaction=True)


def waits(*seconds: float, name: str = "waits") -> dict:
    ids = [f"w{i}" for i in range(len(seconds))]
    return {
        "name": name,
        "nodes": [
            {
                "id": node_id,
                "type": "wait",
                "config": {"seconds": s},
                "next": ids[i + 1] if i + 1 < len(ids) else None,
            }
            for i, (node_id, s) in enumerate(zip(ids, seconds, strict=True))
        ],
    }


def status_of(run_id: int) -> str:
    return PipelineRun.objects.get(pk=run_id).status


def test_anonymous_wrong_and_revoked_tokens_get_401_and_missing_permissions_403(
    served: Server, api_users: ApiUsers
):
    assert served.call("GET", "/api/runs").status == 401
    assert served.call("GET", "/api/runs", token="orc_not-a-real-token").status == 401
    assert served.call("GET", "/api/runs", token="garbage").status == 401
    assert served.call("GET", "/api/runs", token=api_users.operator).status == 200

    # Not staff: nothing at all.
    refused = served.call("GET", "/api/runs", token=api_users.outsider)
    assert refused.status == 403
    assert refused.body["detail"] == access.VIEW_DENIED
    # Staff without the permission: may read, may not start or control.
    assert served.call("GET", "/api/runs", token=api_users.viewer).status == 200
    run = engine.create_run(parse(waits(0)), payload={})
    for path in ("/api/runs", f"/api/runs/{run.pk}/pause", f"/api/runs/{run.pk}/cancel"):
        answer = served.call("POST", path, {"config": waits(0)}, token=api_users.viewer)
        assert answer.status == 403, path
        assert "orchestrator.change_pipelinerun" in answer.body["detail"]
    assert status_of(run.pk) == RunStatus.QUEUED
    assert PipelineRun.objects.count() == 1

    # Revoked: refused at once, like a wrong token.
    record = tokens.authenticate(api_users.operator)
    assert record is not None
    tokens.revoke(str(record.api_tokens.get().pk))
    assert served.call("GET", "/api/runs", token=api_users.operator).status == 401


def test_a_run_started_over_http_runs_in_the_server_and_obeys_pause_resume_and_409(
    served: Server, api_users: ApiUsers
):
    token = api_users.operator
    started = served.call("POST", "/api/runs", {"config": waits(2, 0.5, 0)}, token=token)
    assert started.status == 201, started.body
    run_id = started.body["run_id"]
    assert started.body["status"] == "QUEUED"
    wait_for(lambda: NodeRun.objects.filter(run_id=run_id, status=NodeStatus.RUNNING).exists())

    paused = served.call("POST", f"/api/runs/{run_id}/pause", token=token)
    assert paused.status == 200
    assert paused.body["previous_status"] == "RUNNING" and paused.body["status"] == "PAUSING"
    assert paused.body["message"].startswith(f"Pipeline run {run_id} is pausing: node '")
    wait_for(lambda: status_of(run_id) == RunStatus.PAUSED)
    again = served.call("POST", f"/api/runs/{run_id}/pause", token=token)
    assert again.body == {
        "run_id": run_id,
        "action": "pause",
        "previous_status": "PAUSED",
        "status": "PAUSED",
        "noop": True,
        "message": f"Pipeline run {run_id} is already paused.",
    }

    resumed = served.call("POST", f"/api/runs/{run_id}/resume", token=token)
    assert resumed.status == 200
    assert resumed.body["message"].endswith("is queued.")  # to the server's run thread
    wait_for(lambda: status_of(run_id) == RunStatus.COMPLETED)

    refused = served.call("POST", f"/api/runs/{run_id}/pause", token=token)
    assert refused.status == 409
    assert refused.body["detail"] == (
        f"Cannot pause pipeline run {run_id}: it is COMPLETED. "
        "Pause is allowed only when the run is Queued or Running."
    )
    missing = served.call("POST", "/api/runs/999999/cancel", token=token)
    assert (missing.status, missing.body["detail"]) == (404, "Pipeline run not found: 999999")

    document = served.call("GET", f"/api/runs/{run_id}", token=token).body
    assert [(n["id"], n["status"], n["attempt"]) for n in document["nodes"]] == [
        ("w0", "COMPLETED", 1),
        ("w1", "COMPLETED", 1),
        ("w2", "COMPLETED", 1),
    ]
    # Executed by the serving process, not by this one.
    assert {n["worker"].rsplit(":", 1)[1] for n in document["nodes"]} != {
        str(__import__("os").getpid())
    }
    kinds = [e["kind"] for e in document["events"]]
    assert kinds[:2] == ["queued", "pause requested"] and "paused" in kinds
    assert kinds[-1] == "completed" and "resumed" in kinds


def test_runs_are_listed_newest_first_with_filters_search_pages_and_current_nodes(
    served: Server, api_users: ApiUsers
):
    first = engine.create_run(parse(waits(0, name="alpha")), payload={})
    second = engine.create_run(parse(waits(0, 0, name="beta")), payload={})
    third = engine.create_run(parse(waits(0, name="alpha")), payload={})
    PipelineRun.objects.filter(pk=second.pk).update(
        status=RunStatus.RUNNING, clarifai_pipeline_version_run_id="pvr-77"
    )
    NodeRun.objects.create(run=second, node_id="w1", node_type="wait", status=NodeStatus.RUNNING)

    def ids(query: str) -> list[int]:
        answer = served.call("GET", f"/api/runs{query}", token=api_users.viewer)
        assert answer.status == 200, answer.body
        return [row["id"] for row in answer.body["runs"]]

    assert ids("") == [third.pk, second.pk, first.pk]
    assert ids("?definition=alpha") == [third.pk, first.pk]
    assert ids("?status=RUNNING") == [second.pk]
    assert ids(f"?q={first.pk}") == [first.pk]
    assert ids("?q=pvr-77") == [second.pk]
    assert ids(f"?q={third.trace_id}") == [third.pk]
    page = served.call("GET", "/api/runs?limit=2&page=1", token=api_users.viewer).body
    assert page["has_more"] is True and [r["id"] for r in page["runs"]] == [third.pk, second.pk]
    assert page["runs"][1]["current_nodes"] == ["w1"]
    last = served.call("GET", "/api/runs?limit=2&page=2", token=api_users.viewer).body
    assert last["has_more"] is False and [r["id"] for r in last["runs"]] == [first.pk]
    assert served.call("GET", "/api/runs?status=NOPE", token=api_users.viewer).status == 422


def test_definitions_are_saved_validated_and_shown_with_secrets_redacted(
    served: Server, api_users: ApiUsers
):
    hook = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
    definition = {
        "name": "notify-ops",
        "nodes": [
            {"id": "tell", "type": "notify", "config": {"driver": "slack", "webhook_url": hook}}
        ],
    }
    created = served.call(
        "POST", "/api/definitions", {"config": definition}, token=api_users.operator
    )
    assert (created.status, created.body) == (
        201,
        {"name": "notify-ops", "version": 1, "created": True},
    )
    unchanged = served.call(
        "POST", "/api/definitions", {"config": definition}, token=api_users.operator
    )
    assert (unchanged.status, unchanged.body["version"]) == (200, 1)
    definition["description"] = "Tell the on-call channel"
    updated = served.call(
        "POST", "/api/definitions", {"config": definition}, token=api_users.operator
    )
    assert (updated.status, updated.body["version"]) == (200, 2)
    denied = served.call("POST", "/api/definitions", {"config": definition}, token=api_users.viewer)
    assert denied.status == 403

    shown = served.call("GET", "/api/definitions/notify-ops", token=api_users.viewer)
    assert shown.status == 200 and "XXXXSECRET" not in str(shown.body)
    assert shown.body["config"]["nodes"][0]["config"]["webhook_url"] == "***redacted***"
    listing = served.call("GET", "/api/definitions", token=api_users.viewer).body
    assert [(d["name"], d["version"]) for d in listing] == [("notify-ops", 2)]
    assert PipelineDefinition.objects.get().config["nodes"][0]["config"]["webhook_url"] == hook

    broken = {"nodes": [{"id": "a", "type": "nope", "next": "zz"}, {"id": "a", "type": "wait"}]}
    checked = served.call(
        "POST", "/api/definitions/validate", {"config": broken}, token=api_users.viewer
    )
    assert checked.body["valid"] is False
    assert len(checked.body["problems"]) >= 3  # every problem at once
    assert "Duplicate node id: 'a'" in checked.body["problems"]
    good = served.call(
        "POST", "/api/definitions/validate", {"config": waits(0, 0)}, token=api_users.viewer
    )
    assert good.body == {"valid": True, "problems": [], "nodes": 2}
    rejected = served.call("POST", "/api/runs", {"config": broken}, token=api_users.operator)
    assert rejected.status == 422 and rejected.body["problems"] == checked.body["problems"]
    unknown = served.call("POST", "/api/runs", {"definition": "nope"}, token=api_users.operator)
    assert (unknown.status, unknown.body["detail"]) == (404, "Pipeline definition not found: nope")

    run = engine.create_run(parse(waits(0)), payload={})
    PipelineRun.objects.filter(pk=run.pk).update(error="upstream said: Bearer abcdef0123456789")
    document = served.call("GET", f"/api/runs/{run.pk}", token=api_users.viewer).body
    assert "abcdef0123456789" not in str(document)


def test_schema_docs_and_static_files_are_served_by_the_same_process(served: Server):
    schema = served.call("GET", "/api/schema")
    assert schema.status == 200 and schema.body["openapi"].startswith("3.")
    paths = schema.body["paths"]
    for path in (
        "/api/runs",
        "/api/runs/{ref}",
        "/api/runs/{ref}/pause",
        "/api/definitions/validate",
    ):
        assert path in paths
    assert "BearerToken" in schema.body["components"]["securitySchemes"]

    docs = served.call("GET", "/api/docs")
    assert docs.status == 200 and "/static/ninja/swagger-ui-bundle.js" in docs.body
    assert "cdn" not in docs.body.lower()
    for asset in (
        "/static/admin/css/base.css",  # the admin's, with DEBUG off
        "/static/orchestrator_web/console.js",
        "/static/ninja/swagger-ui-bundle.js",
    ):
        answer = served.call("GET", asset)
        assert answer.status == 200, asset
    assert served.call("GET", "/").status == 200  # the sign-in page, after a redirect


@pytest.mark.workers
def test_with_a_broker_runs_started_over_http_are_queued_to_workers(
    workers: WorkerPool, api_users: ApiUsers, tmp_path: Path
):
    workers.start("w1")
    env = subprocess_env(CELERY_BROKER_URL=workers.broker.url)
    server = Server(REPO, env, tmp_path / "serve.log", free_port()).start()
    try:
        started = server.call(
            "POST", "/api/runs", {"config": waits(0.2, 0)}, token=api_users.operator
        )
        assert started.status == 201, started.body
        run_id = started.body["run_id"]
        wait_for(lambda: status_of(run_id) == RunStatus.COMPLETED)
        seen = set(NodeRun.objects.filter(run_id=run_id).values_list("worker", flat=True))
        assert len(seen) == 1 and seen.pop().rsplit(":", 1)[1] not in server.worker_pids
        assert len(server.worker_pids) == 2
        assert "2 processes" in server.output() and "runs are queued to workers" in server.output()
    finally:
        server.stop()
