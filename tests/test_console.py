"""The console's pages and its graph layout: sign-in, staff only, permissions, CSRF, the run
page's buttons and live parts, the refusal sentence, filters, definitions and starting a run."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from orchestrator import engine
from orchestrator.definitions import parse
from orchestrator.models import NodeRun, PipelineDefinition, PipelineRun
from orchestrator.state import NodeStatus, RunStatus
from orchestrator.web import graph

FETCH = {"HTTP_X_REQUESTED_WITH": "fetch"}


def two_waits(name: str = "waits") -> dict:
    return {
        "name": name,
        "nodes": [
            {"id": "first", "type": "wait", "config": {"seconds": 0}, "next": "second"},
            {"id": "second", "type": "wait", "config": {"seconds": 0}},
        ],
    }


def signed_in(username: str, *, staff: bool = True, control: bool = False) -> Client:
    user = User.objects.create_user(username, password="pw", is_staff=staff)
    if control:
        user.user_permissions.add(Permission.objects.get(codename="change_pipelinerun"))
    client = Client()
    client.force_login(user)
    return client


def running_run(name: str = "waits") -> PipelineRun:
    run = engine.create_run(parse(two_waits(name)), payload={})
    PipelineRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    NodeRun.objects.filter(run=run, node_id="first").update(status=NodeStatus.RUNNING)
    return PipelineRun.objects.get(pk=run.pk)


# --- graph layout (pure) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "columns"),
    [
        (
            [{"id": "a", "next": "b"}, {"id": "b", "next": "c"}, {"id": "c"}],
            {"a": 0, "b": 1, "c": 2},
        ),
        (
            [{"id": "a", "next": ["b", "c"]}, {"id": "b", "next": "d"}, {"id": "c"}, {"id": "d"}],
            {"a": 0, "b": 1, "c": 1, "d": 2},
        ),
        (  # a join sits after its longest branch
            [
                {"id": "a", "next": ["b", "j"]},
                {"id": "b", "next": "c"},
                {"id": "c", "next": "j"},
                {"id": "j"},
            ],
            {"a": 0, "b": 1, "c": 2, "j": 3},
        ),
        ([{"id": "a"}, {"id": "handler"}], {"a": 0, "handler": 1}),  # unreachable: last column
        ([{"id": "a", "next": "b"}, {"id": "b", "next": "a"}], {"a": 0, "b": 1}),  # cycle: ends
        ([], {}),
    ],
)
def test_graph_columns_follow_the_longest_path_from_the_entry(nodes, columns):
    assert graph.columns(nodes) == columns


def test_graph_layout_places_parallel_nodes_in_rows_and_links_them():
    nodes = [{"id": "a", "type": "t", "next": ["b", "c"]}, {"id": "b"}, {"id": "c"}]
    layout = graph.layout(nodes)
    boxes = {box.id: (box.column, box.row) for box in layout.boxes}
    assert boxes == {"a": (0, 0), "b": (1, 0), "c": (1, 1)}
    assert [(e.source.id, e.target.id) for e in layout.edges] == [("a", "b"), ("a", "c")]
    assert layout.width == 2 * graph.MARGIN + 2 * graph.NODE_WIDTH + graph.COLUMN_GAP


# --- pages --------------------------------------------------------------------------------------

needs_db = pytest.mark.django_db(transaction=True)


@needs_db
def test_pages_need_a_staff_sign_in(client: Client):
    answer = client.get("/")
    assert answer.status_code == 302 and answer["Location"] == "/login/?next=/"
    assert client.get("/runs/1/").status_code == 302
    User.objects.create_user("someone", password="pw")
    assert client.post("/login/", {"username": "someone", "password": "pw"}).status_code == 302
    assert client.get("/").status_code == 403
    assert signed_in("staff").get("/").status_code == 200


@needs_db
def test_run_page_shows_the_graph_and_only_the_buttons_the_table_allows():
    run = running_run()
    operator = signed_in("operator", control=True)
    page = operator.get(f"/runs/{run.pk}/").content.decode()
    assert 'data-node="first"' in page and 'data-node="second"' in page
    assert 'class="node status-running"' in page
    assert ">Pause</button>" in page and ">Cancel</button>" in page and ">Resume<" not in page
    viewer_page = signed_in("viewer").get(f"/runs/{run.pk}/").content.decode()
    assert ">Pause</button>" not in viewer_page  # no permission, no buttons

    PipelineRun.objects.filter(pk=run.pk).update(status=RunStatus.PAUSED)
    NodeRun.objects.create(run=run, node_id="second", node_type="wait", status=NodeStatus.QUEUED)
    live = operator.get(f"/runs/{run.pk}/live", **FETCH).json()
    assert live["status"] == "PAUSED" and live["terminal"] is False
    assert live["nodes"] == {"first": "RUNNING", "second": "QUEUED"}
    assert ">Resume</button>" in live["html"]["actions"] and "Pause" not in live["html"]["actions"]
    assert "Resumes at" in live["html"]["summary"]


@needs_db
def test_signals_from_the_page_go_through_control_and_a_refusal_shows_the_cli_sentence():
    run = running_run()
    operator = signed_in("operator", control=True)
    answer = operator.post(f"/runs/{run.pk}/pause", **FETCH).json()
    assert answer["ok"] is True and answer["status"] == "PAUSING"
    assert answer["message"] == (
        f"Pipeline run {run.pk} is pausing: node 'first' is running; "
        "the run will pause before 'second'."
    )
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.PAUSING

    PipelineRun.objects.filter(pk=run.pk).update(status=RunStatus.COMPLETED)
    sentence = (
        f"Cannot pause pipeline run {run.pk}: it is COMPLETED. "
        "Pause is allowed only when the run is Queued or Running."
    )
    refused = operator.post(f"/runs/{run.pk}/pause", **FETCH)
    assert refused.status_code == 409 and refused.json() == {"ok": False, "message": sentence}
    followed = operator.post(f"/runs/{run.pk}/pause", follow=True)  # without JavaScript
    assert sentence in followed.content.decode()

    viewer = signed_in("viewer")
    assert viewer.post(f"/runs/{run.pk}/cancel").status_code == 403
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.COMPLETED


@needs_db
def test_every_form_needs_its_csrf_token():
    run = running_run()
    user = User.objects.create_user("op", password="pw", is_staff=True, is_superuser=True)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post(f"/runs/{run.pk}/cancel").status_code == 403
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.RUNNING
    page = strict.get(f"/runs/{run.pk}/").content.decode()
    token = page.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    done = strict.post(f"/runs/{run.pk}/cancel", {"csrfmiddlewaretoken": token})
    assert done.status_code == 302
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.CANCELLING


@needs_db
def test_runs_page_filters_searches_and_pages_newest_first():
    runs = [engine.create_run(parse(two_waits(f"p{i % 2}")), payload={}) for i in range(3)]
    PipelineRun.objects.filter(pk=runs[1].pk).update(status=RunStatus.FAILED)
    client = signed_in("staff")

    def shown(query: str) -> list[int]:
        html = client.get(f"/{query}").content.decode()
        return [run.pk for run in reversed(runs) if f'href="/runs/{run.pk}/"' in html]

    assert shown("") == [runs[2].pk, runs[1].pk, runs[0].pk]
    assert shown("?status=FAILED") == [runs[1].pk]
    assert shown("?definition=p0") == [runs[2].pk, runs[0].pk]
    assert shown(f"?q={runs[0].pk}") == [runs[0].pk]
    html = client.get("/?definition=p0").content.decode()
    assert "Older" not in html and "Page 1" in html


@needs_db
def test_definition_page_validates_and_starts_a_run_from_its_form():
    PipelineDefinition.objects.create(name="waits", config=two_waits())
    operator = signed_in("operator", control=True)
    page = operator.get("/definitions/waits/").content.decode()
    assert "Valid: 2 nodes." in page and 'data-node="second"' in page and "Start run" in page
    assert "Start run" not in signed_in("viewer").get("/definitions/waits/").content.decode()

    bad = operator.post("/definitions/waits/", {"payload": "[1]"}, follow=True)
    assert "Payload must be a JSON object" in bad.content.decode()
    assert not PipelineRun.objects.exists()

    started = operator.post(
        "/definitions/waits/", {"payload": json.dumps({"host": "web-01"}), "source": "console"}
    )
    run = PipelineRun.objects.get()
    assert started["Location"] == f"/runs/{run.pk}/"
    assert run.payload == {"host": "web-01"} and run.source == "console"
    assert run.definition.name == "waits"

    checked = operator.post(
        "/definitions/validate", {"config": json.dumps({"nodes": [{"id": "a", "type": "nope"}]})}
    ).content.decode()
    assert "Pipeline definition invalid" in checked and "unknown type: nope" in checked
