"""The CLI from any host: with ORCHESTRATOR_URL and ORCHESTRATOR_TOKEN set and no DATABASE_URL,
``pr`` and ``run_pipeline`` go through the HTTP API instead of the database.

The answers are turned back into (unsaved) model objects and printed by the same display
functions as against the database, so the output, messages and exit codes are the same.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from commands import display
from commands.client import URL_VARIABLE, ApiClient, quote
from commands.progress import FOLLOW_UNTIL, Progress, report, wait_for_effect
from orchestrator import builtin, definitions, documents, payloads
from orchestrator.errors import DefinitionError, RemoteError
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.state import Action, RunStatus

CLARIFAI_IDS = ("user_id", "app_id", "pipeline_id", "pipeline_version_id")


def configured() -> bool:
    """Whether this process talks to a server: an API URL is set and no database is."""
    return bool(os.environ.get(URL_VARIABLE, "").strip()) and not os.environ.get("DATABASE_URL")


def handler_for(command: BaseCommand) -> Callable[[BaseCommand, dict[str, Any]], None]:
    """The remote implementation of ``command``; a command without one is refused."""
    name = type(command).__module__.rsplit(".", 1)[-1]
    handlers = {"pipelinerun": pipelinerun, "pr": pipelinerun, "run_pipeline": run_pipeline}
    if name not in handlers:
        raise CommandError(
            f"orchestrator {name} works on the database, and {URL_VARIABLE} is set with no "
            f"DATABASE_URL: only 'pr' and 'run_pipeline' go through the API. Set DATABASE_URL "
            f"(or unset {URL_VARIABLE}) to run it here."
        )
    return handlers[name]


# --- documents back into model objects ------------------------------------------------------------


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _run(doc: dict[str, Any]) -> PipelineRun:
    link = doc.get("clarifai") or {}
    return PipelineRun(
        pk=doc["run_id"],
        trace_id=doc["trace_id"],
        status=doc["status"],
        pipeline_name=doc["pipeline"],
        definition_id=doc["definition_id"],
        source=doc["source"],
        environment=doc["environment"],
        error=doc["error"] or "",
        created_at=_when(doc["created_at"]),
        started_at=_when(doc["started_at"]),
        finished_at=_when(doc["finished_at"]),
        duration_ms=doc["duration_ms"],
        queued_by=doc["queued_by"],
        **{
            f"clarifai_{key}": link.get(key) or ""
            for key in (*CLARIFAI_IDS, "pipeline_version_run_id")
        },
    )


def _nodes(doc: dict[str, Any]) -> list[NodeRun]:
    return [
        NodeRun(
            run_id=doc["run_id"],
            node_id=n["id"],
            node_type=n["type"],
            status=n["status"],
            attempt=n["attempt"],
            worker=n["worker"] or "",
            started_at=_when(n["started_at"]),
            finished_at=_when(n["finished_at"]),
            duration_ms=n["duration_ms"],
            output=n["output"],
            error=n["error"] or "",
            reason=n["reason"] or "",
        )
        for n in doc["nodes"]
    ]


def _definition(doc: dict[str, Any]) -> definitions.Definition | None:
    """The run's graph, as the server read it from the run's snapshot."""
    return documents.definition_from_graph(doc["graph"]) if doc.get("graph") else None


def _events(doc: dict[str, Any]) -> list[RunEvent]:
    return [
        RunEvent(
            run_id=doc["run_id"],
            kind=e["kind"],
            at=_when(e["at"]),
            host=e["host"],
            pid=e["pid"],
            node_id=e["node_id"] or "",
            details=e["details"],
        )
        for e in doc.get("events", [])
    ]


def _cli_document(doc: dict[str, Any], *, events: bool) -> dict[str, Any]:
    """The API's run document in the shape the CLI prints with --json."""
    shown = {k: v for k, v in doc.items() if k != "graph" and (events or k != "events")}
    if shown.get("clarifai") is None:
        shown.pop("clarifai", None)
    elif not events:
        shown["clarifai"] = {k: v for k, v in shown["clarifai"].items() if k != "mirror"}
    return shown


# --- pr -------------------------------------------------------------------------------------------


def pipelinerun(command: BaseCommand, opts: dict[str, Any]) -> None:
    client = ApiClient.from_environment()
    verb = opts["verb"]
    if verb in ("pause", "cancel", "resume"):
        _control(command, client, Action(verb), opts)
    elif verb == "list":
        _list(command, client, opts)
    elif verb == "status":
        _status(command, client, opts)
    else:
        _watch(command, client, opts)


def _control(command: Any, client: ApiClient, action: Action, opts: dict[str, Any]) -> None:
    ref = opts["run_id"] or opts["pipeline_version_run_id"]
    if not ref:
        raise CommandError(
            f"Give the run id: as an argument (orchestrator pr {action} 42) or as "
            f"--pipeline_version_run_id=42",
            returncode=2,
        )
    ids = {name: opts[name] for name in CLARIFAI_IDS}
    try:
        result = client.post(
            f"/api/runs/{quote(ref)}/{action}", {k: v for k, v in ids.items() if v}
        )
    except RemoteError as exc:
        if exc.status != 404:
            raise
        # No run on the server: patch the Clarifai run directly, as against the database.
        command._control_remote(action, str(ref), ids, opts)
        return
    run_id, status = result["run_id"], result["status"]
    if opts["wait"] and not result["noop"]:

        def fetch() -> tuple[dict[str, Any], str, bool]:
            doc = client.get(f"/api/runs/{run_id}")
            return doc, doc["status"], bool(doc["running_nodes"])

        status = wait_for_effect(run_id, action, opts["timeout"], fetch)["status"]
    if opts["json"]:
        data = {**result, "status": status}
        if opts["wait"]:
            data["waited"] = True
        command.line(display.dumps(data))
    else:
        command.line(result["message"])
        if opts["wait"] and status != result["status"]:
            command.line(f"Pipeline run {run_id} is now {status}.")


def _list(command: Any, client: ApiClient, opts: dict[str, Any]) -> None:
    found = client.get(
        "/api/runs",
        status=opts["status"],
        definition=opts["definition"],
        page=opts["page"],
        limit=opts["limit"],
    )
    rows = [{**row, "created_at": _when(row["created_at"])} for row in found["runs"]]
    if opts["json"]:
        command.line(
            display.dumps(
                {
                    "page": found["page"],
                    "limit": found["limit"],
                    "has_more": found["has_more"],
                    "runs": rows,
                }
            )
        )
        return
    next_page = display.more_command(opts) if found["has_more"] else None
    command.lines(display.run_list_lines(rows, opts["page"], next_page))


def _status(command: Any, client: ApiClient, opts: dict[str, Any]) -> None:
    doc = client.get(f"/api/runs/{quote(opts['run_id'])}")
    if opts["json"]:
        command.line(display.dumps(_cli_document(doc, events=True)))
        return
    mirror_state = (doc.get("clarifai") or {}).get("mirror")
    command.lines(
        display.status_lines(_run(doc), _nodes(doc), _events(doc), mirror_state, _definition(doc))
    )


def _follow(client: ApiClient, run_id: int, progress: Progress, interval: float) -> dict[str, Any]:
    """Poll the run through the API until it ends or pauses, printing node changes."""
    seen: dict[str, tuple[str, int]] = {}
    while True:
        doc = client.get(f"/api/runs/{run_id}")
        report(seen, _nodes(doc), progress)
        if RunStatus(doc["status"]) in FOLLOW_UNTIL:
            return doc
        time.sleep(interval)


def _watch(command: Any, client: ApiClient, opts: dict[str, Any]) -> None:
    doc = client.get(f"/api/runs/{quote(opts['run_id'])}")
    progress = Progress(sys.stdout)
    progress.say(f"Watching pipeline run {doc['run_id']} ({doc['pipeline']}): {doc['status']}")
    try:
        doc = _follow(client, doc["run_id"], progress, opts["interval"])
    except KeyboardInterrupt:
        command.line(f"Stopped watching pipeline run {doc['run_id']}; it keeps going.")
        return
    command.line(display.final_line(_run(doc), _nodes(doc)))


# --- run_pipeline ---------------------------------------------------------------------------------


def run_pipeline(command: Any, opts: dict[str, Any]) -> None:
    if opts["definition"] and opts["config"]:
        raise CommandError("Cannot specify both --definition and --config")
    client = ApiClient.from_environment()
    body, definition, label = _what_to_run(client, opts)
    sample = builtin.sample_payload(opts["source"]) if opts["sample"] else None
    payload = payloads.build(sample=sample, payload=opts["payload"], file=opts["file"])
    if opts["dry_run"]:
        command.lines(
            display.dry_run_lines(
                definition,
                label=label,
                source=opts["source"],
                environment=opts["environment"],
                payload=payload,
            )
        )
        return
    link = command._link(opts)
    if link is not None:
        body["clarifai"] = {
            "user_id": link.user_id,
            "app_id": link.app_id,
            "pipeline_id": link.pipeline_id,
            "pipeline_version_id": link.pipeline_version_id,
            "pipeline_version_run_id": link.pipeline_version_run_id,
        }
    started = client.post(
        "/api/runs",
        {**body, "payload": payload, "source": opts["source"], "environment": opts["environment"]},
    )
    run_id, trace_id = started["run_id"], started["trace_id"]
    if opts["detach"]:
        if opts["json"]:
            command.line(display.dumps(started))
        else:
            command.lines(display.detached_lines(run_id, trace_id))
        return
    progress = Progress(sys.stderr, enabled=not opts["quiet"])
    progress.say(f"Pipeline run {run_id} queued (trace {trace_id})")
    try:
        doc = _follow(client, run_id, progress, 0.2)
    except KeyboardInterrupt:
        raise CommandError(
            f"Stopped following pipeline run {run_id}; it keeps running.\n"
            f"  Watch it:  orchestrator pr watch {run_id}\n"
            f"  Cancel it: orchestrator pr cancel {run_id}"
        ) from None
    doc = client.get(f"/api/runs/{run_id}")
    run = _run(doc)
    if opts["json"]:
        command.line(display.dumps(_cli_document(doc, events=False)))
    else:
        command.lines(display.result_lines(run, _nodes(doc), _definition(doc)))
    if error := display.outcome_error(run):
        raise CommandError(error)


def _what_to_run(
    client: ApiClient, opts: dict[str, Any]
) -> tuple[dict[str, Any], definitions.Definition, str]:
    """The request's definition part, the parsed definition (for --dry-run) and its label."""
    try:
        if opts["definition"]:
            name = opts["definition"]
            stored = client.get(f"/api/definitions/{quote(name)}")
            if not stored["is_active"]:
                raise CommandError(
                    f"Pipeline definition is inactive: {name} "
                    f"(save it again or set is_active in the admin to run it)"
                )
            parsed = definitions.parse(stored["config"], name=name)
            return {"definition": name}, parsed, f"Pipeline Definition: {name}"
        if opts["config"]:
            data = definitions.load_file(opts["config"])
            name = data.get("name") if isinstance(data, dict) else None
            parsed = definitions.parse(data, name=name or Path(opts["config"]).stem)
            config = {**data, "name": parsed.name}
            return {"config": config}, parsed, f"Pipeline Config: {opts['config']}"
        parsed = definitions.parse(builtin.BUILTIN_DEFINITION)
        label = f"Pipeline Definition: {parsed.name} (built-in)"
        return {"config": builtin.BUILTIN_DEFINITION}, parsed, label
    except DefinitionError as exc:
        raise CommandError(str(exc)) from exc
    except RemoteError as exc:
        if exc.status == 404:
            raise CommandError(f"Pipeline definition not found: {opts['definition']}") from exc
        raise
