"""Mirror a run's pause, cancel or resume to a Clarifai pipeline version run.

This does what the Clarifai CLI's ``clarifai pr pause|cancel|resume`` does: one
``PatchPipelineVersionRuns`` call that overwrites the run's orchestration status. The ids come
from flags, a local run's stored link, or the ``config-lock.yaml`` written by
``clarifai pipeline upload``.
``clarifai_grpc`` and ``grpc`` are imported inside the functions that need them, so importing this
module costs the CLI nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from orchestrator.errors import ClarifaiError
from orchestrator.state import CLARIFAI_CODES, SIGNAL_EFFECTS

if TYPE_CHECKING:
    import grpc

#: The orchestration status each control verb sets, as a ``status_code_pb2`` name.
#: The Clarifai status each `pr` verb sets, as in `clarifai pr pause|cancel|resume`.
STATUS_CODES = {str(action): CLARIFAI_CODES[status] for action, status in SIGNAL_EFFECTS.items()}

DEFAULT_API_BASE = "https://api.clarifai.com"
#: The Clarifai CLI's own configuration (written by ``clarifai login``).
CLI_CONFIG = Path("~/.config/clarifai/config")
#: Orchestration statuses after which a Clarifai run changes no more.
FINAL_CODES = frozenset(
    {"JOB_COMPLETED", "JOB_FAILED", "JOB_CANCELLED", "JOB_UNEXPECTED_ERROR", "JOB_CONFLICT"}
)
DEFAULT_TIMEOUT = 10.0
CONFIG_LOCK = "config-lock.yaml"

#: Our id names, each with the flag that supplies it and its key under ``pipeline:`` in the lock.
ID_FIELDS = ("user_id", "app_id", "pipeline_id", "pipeline_version_id")
_LOCK_KEYS = {
    "user_id": "user_id",
    "app_id": "app_id",
    "id": "pipeline_id",
    "version_id": "pipeline_version_id",
}

# gRPC codes worth another attempt later; anything else (auth, not found, bad request) is final.
_RETRYABLE_GRPC = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "INTERNAL"})
# Clarifai statuses that mean "busy or broken on our side, try again": throttling, timeouts and
# the INTERNAL_* range (98000-98999).
_RETRYABLE_STATUS = frozenset(
    {
        "CONN_THROTTLED",
        "TRY_AGAIN",
        "SERVER_ERROR",
        "MODEL_BUSY_PLEASE_RETRY",
        "RPC_SERVER_UNAVAILABLE",
        "RPC_REQUEST_TIMEOUT",
        "DATABASE_STATEMENT_TIMEOUT",
        "INTERNAL_UNCATEGORIZED",
    }
)
_INTERNAL_STATUS_RANGE = range(98000, 99000)


class ClarifaiCallError(ClarifaiError):
    """Raised when a Clarifai call fails; says whether trying again later may succeed."""

    def __init__(self, message: str, *, code_name: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.code_name = code_name
        self.retryable = retryable


@dataclass(frozen=True)
class ClarifaiIds:
    """Everything that names one Clarifai pipeline version run."""

    user_id: str
    app_id: str
    pipeline_id: str
    pipeline_version_id: str
    pipeline_version_run_id: str


def cli_context(path: Path | None = None) -> dict[str, str]:
    """The ``env`` of the Clarifai CLI's current context (``CLARIFAI_PAT``, ``CLARIFAI_USER_ID``,
    ``CLARIFAI_API_BASE``), as ``clarifai login`` writes it; empty when there is none."""
    import yaml

    override = os.environ.get("ORCHESTRATOR_CLARIFAI_CONFIG")  # for tests and odd setups
    path = (path or (Path(override) if override else CLI_CONFIG)).expanduser()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    if not isinstance(document, dict) or not isinstance(document.get("contexts"), dict):
        return {}
    context = document["contexts"].get(document.get("current_context", "default"))
    env = context.get("env") if isinstance(context, dict) else None
    if not isinstance(env, dict):
        return {}
    return {str(k): str(v) for k, v in env.items() if isinstance(v, str | int) and v != ""}


def setting(name: str) -> str:
    """``CLARIFAI_<name>`` from the environment, else from the Clarifai CLI's current context."""
    return os.environ.get(name) or cli_context().get(name, "")


def load_config_lock(path: Path) -> dict[str, str]:
    """The pipeline ids in a ``config-lock.yaml``, under our names, for the keys present."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ClarifaiError(f"{path} could not be read: {e}") from e
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        reason = getattr(e, "problem", None) or type(e).__name__
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            reason += f" (line {mark.line + 1}, column {mark.column + 1})"
        raise ClarifaiError(f"{path} is not valid YAML: {reason}") from e
    if not isinstance(document, dict) or not isinstance(document.get("pipeline"), dict):
        raise ClarifaiError(
            f"{path} has no `pipeline:` mapping (expected the file written by "
            "`clarifai pipeline upload`)"
        )
    pipeline = document["pipeline"]
    return {
        ours: str(pipeline[theirs])
        for theirs, ours in _LOCK_KEYS.items()
        if pipeline.get(theirs) not in (None, "")
    }


def resolve_ids(
    run_id: str,
    *,
    user_id: str | None = None,
    app_id: str | None = None,
    pipeline_id: str | None = None,
    pipeline_version_id: str | None = None,
    stored: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> ClarifaiIds:
    """The ids for ``run_id``: explicit flags, else ``stored``, else ``config-lock.yaml`` in cwd."""
    if not run_id:
        raise ClarifaiError("Missing Clarifai id: the run id (or --pipeline_version_run_id).")
    flags = {
        "user_id": user_id,
        "app_id": app_id,
        "pipeline_id": pipeline_id,
        "pipeline_version_id": pipeline_version_id,
    }
    ids = {name: value for name, value in flags.items() if value}
    for name, value in (stored or {}).items():
        if name in ID_FIELDS and value:
            ids.setdefault(name, str(value))
    if "user_id" not in ids and stored is None and (user := setting("CLARIFAI_USER_ID")):
        ids["user_id"] = user

    lock_problem = ""
    lock_path = (cwd if cwd is not None else Path.cwd()) / CONFIG_LOCK
    if any(name not in ids for name in ID_FIELDS) and lock_path.exists():
        try:
            for name, value in load_config_lock(lock_path).items():
                ids.setdefault(name, value)
        except ClarifaiError as e:
            lock_problem = f" {CONFIG_LOCK} could not be used: {e}."

    missing = [name for name in ID_FIELDS if name not in ids]
    if missing:
        flags_text = ", ".join(f"--{name}" for name in missing)
        raise ClarifaiError(
            f"Missing Clarifai ids: {flags_text}. Pass them as flags, or run from a directory "
            f"with a {CONFIG_LOCK} (written by `clarifai pipeline upload`).{lock_problem}"
        )
    return ClarifaiIds(pipeline_version_run_id=str(run_id), **ids)


def patch_run_status(
    ids: ClarifaiIds,
    code_name: str,
    *,
    pat: str | None = None,
    base: str | None = None,
    timeout: float | None = None,
) -> None:
    """Set the orchestration status of the run ``ids`` names to ``status_code_pb2.<code_name>``."""
    from clarifai_grpc.grpc.api import resources_pb2, service_pb2
    from clarifai_grpc.grpc.api.status import status_code_pb2, status_pb2

    try:
        code = status_code_pb2.StatusCode.Value(code_name)
    except ValueError:
        raise ClarifaiCallError(
            f"Unknown Clarifai status code {code_name!r}", code_name="UNKNOWN_STATUS_CODE"
        ) from None
    request = service_pb2.PatchPipelineVersionRunsRequest(
        user_app_id=resources_pb2.UserAppIDSet(user_id=ids.user_id, app_id=ids.app_id),
        pipeline_id=ids.pipeline_id,
        pipeline_version_id=ids.pipeline_version_id,
        pipeline_version_runs=[
            resources_pb2.PipelineVersionRun(
                id=ids.pipeline_version_run_id,
                orchestration_status=resources_pb2.OrchestrationStatus(
                    status=status_pb2.Status(code=code)
                ),
            )
        ],
        action="overwrite",
    )
    _call("PatchPipelineVersionRuns", request, pat=pat, base=base, timeout=timeout)


def run_status(
    ids: ClarifaiIds,
    *,
    pat: str | None = None,
    base: str | None = None,
    timeout: float | None = None,
) -> tuple[str, str]:
    """The orchestration status of the run ``ids`` names (``GetPipelineVersionRun``), as its
    ``status_code_pb2`` name and its description."""
    from clarifai_grpc.grpc.api import resources_pb2, service_pb2
    from clarifai_grpc.grpc.api.status import status_code_pb2

    request = service_pb2.GetPipelineVersionRunRequest(
        user_app_id=resources_pb2.UserAppIDSet(user_id=ids.user_id, app_id=ids.app_id),
        pipeline_id=ids.pipeline_id,
        pipeline_version_id=ids.pipeline_version_id,
        pipeline_version_run_id=ids.pipeline_version_run_id,
    )
    response = _call("GetPipelineVersionRun", request, pat=pat, base=base, timeout=timeout)
    status = response.pipeline_version_run.orchestration_status.status
    try:
        name = status_code_pb2.StatusCode.Name(status.code)
    except ValueError:
        name = str(status.code)
    return name, status.description


def _call(
    method: str, request: Any, *, pat: str | None, base: str | None, timeout: float | None
) -> Any:
    """One V2 call with the PAT, the API base and a deadline; ClarifaiCallError on failure."""
    pat = pat if pat is not None else setting("CLARIFAI_PAT")
    if not pat:
        raise ClarifaiCallError(
            "CLARIFAI_PAT is not set: export your Clarifai personal access token",
            code_name="CLARIFAI_PAT_MISSING",
        )
    base = base or setting("CLARIFAI_API_BASE") or DEFAULT_API_BASE
    timeout = timeout if timeout is not None else _default_timeout()

    import grpc
    from clarifai_grpc.grpc.api import service_pb2_grpc
    from clarifai_grpc.grpc.api.status import status_code_pb2

    # The channel must exist before the stub: ClarifaiChannel installs the deserializer V2Stub uses.
    channel = _open_channel(base)
    try:
        stub = service_pb2_grpc.V2Stub(channel)
        response = getattr(stub, method)(
            request, metadata=(("authorization", f"Key {pat}"),), timeout=timeout
        )
    except grpc.RpcError as e:
        raise _rpc_failure(e, base, timeout, pat) from None
    finally:
        channel.close()

    if response.status.code != status_code_pb2.SUCCESS:
        raise _status_failure(response.status, pat, "the change" if "Patch" in method else "it")
    return response


def _default_timeout() -> float:
    """The per-call deadline: the ``ORCHESTRATOR_CLARIFAI_TIMEOUT`` Django setting, else the
    environment variable of that name, else 10 seconds."""
    raw = _timeout_setting()
    if raw is None:
        raw = os.environ.get("ORCHESTRATOR_CLARIFAI_TIMEOUT", "")
    if raw in ("", None):
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = 0.0
    if value <= 0:
        raise ClarifaiCallError(
            f"ORCHESTRATOR_CLARIFAI_TIMEOUT must be a positive number of seconds, not {raw!r}",
            code_name="BAD_TIMEOUT",
        )
    return value


def _timeout_setting() -> Any:
    """The ``ORCHESTRATOR_CLARIFAI_TIMEOUT`` Django setting, or None (also without Django)."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        return getattr(settings, "ORCHESTRATOR_CLARIFAI_TIMEOUT", None)
    except ImproperlyConfigured:
        return None


def _open_channel(base: str) -> grpc.Channel:
    """A channel to ``base``: TLS for ``https://`` or a bare host, plaintext for ``http://``."""
    from clarifai_grpc.channel.clarifai_channel import ClarifaiChannel

    address = base if "://" in base else f"https://{base}"
    parts = urlsplit(address)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number
        host, port = None, None
    if parts.scheme not in ("http", "https") or not host:
        raise ClarifaiCallError(
            f"CLARIFAI_API_BASE {base!r} is not usable: expected https://host[:port] "
            "or http://host:port",
            code_name="BAD_API_BASE",
        )
    if ":" in host:  # an IPv6 literal goes back in brackets
        host = f"[{host}]"
    if parts.scheme == "http":
        return ClarifaiChannel.get_insecure_grpc_channel(base=host, port=port or 80)
    return ClarifaiChannel.get_grpc_channel(base=f"{host}:{port}" if port else host)


def _rpc_failure(error: grpc.RpcError, base: str, timeout: float, pat: str) -> ClarifaiCallError:
    """The one-line error for a failed gRPC call."""
    code = error.code() if hasattr(error, "code") else None
    name = getattr(code, "name", "UNKNOWN")
    details = (error.details() if hasattr(error, "details") else None) or "no details"
    messages = {
        "UNAVAILABLE": f"Cannot reach Clarifai at {base}: {details}",
        "DEADLINE_EXCEEDED": f"Clarifai did not answer within {timeout:g} s",
        "UNAUTHENTICATED": (
            "Clarifai rejected the credentials (UNAUTHENTICATED): check CLARIFAI_PAT"
        ),
        "NOT_FOUND": f"Clarifai has no such pipeline version run (NOT_FOUND): {details}",
    }
    message = messages.get(name, f"Clarifai call failed: {name}: {details}")
    return ClarifaiCallError(
        _without_secret(message, pat), code_name=name, retryable=name in _RETRYABLE_GRPC
    )


def _status_failure(status: Any, pat: str, what: str = "the change") -> ClarifaiCallError:
    """The one-line error for a response whose Clarifai status is not SUCCESS."""
    from clarifai_grpc.grpc.api.status import status_code_pb2

    try:
        name = status_code_pb2.StatusCode.Name(status.code)
    except ValueError:
        name = str(status.code)
    message = f"Clarifai refused {what}: {name}"
    if status.description:
        message += f" ({status.description})"
    if status.details:
        message += f": {status.details}"
    retryable = name in _RETRYABLE_STATUS or status.code in _INTERNAL_STATUS_RANGE
    return ClarifaiCallError(_without_secret(message, pat), code_name=name, retryable=retryable)


def _without_secret(message: str, pat: str) -> str:
    """``message`` with the PAT masked, in case a server echoed it back."""
    return message.replace(pat, "***") if pat else message
