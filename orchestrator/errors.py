"""Exceptions raised by the orchestrator, all rooted at :class:`OrchestratorError`."""

from __future__ import annotations


class OrchestratorError(Exception):
    """Raised for any error the orchestrator reports to its user."""


class DefinitionError(OrchestratorError):
    """Raised when a pipeline definition cannot be parsed or is invalid."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("Pipeline definition invalid:\n" + "\n".join(f"  - {p}" for p in problems))


class PayloadError(OrchestratorError):
    """Raised when a run's payload is not a JSON object of an acceptable size."""


class RunNotFound(OrchestratorError):
    """Raised when no run matches the id given."""


class TransitionRefused(OrchestratorError):
    """Raised when a pause, cancel or resume is not allowed in the run's current status."""


class NodeError(OrchestratorError):
    """Raised by a node handler when its work fails with a message for the operator."""


class NodeCancelled(OrchestratorError):
    """Raised inside a node when its run was cancelled while it ran."""


class NodeTimeout(OrchestratorError):
    """Raised inside a node when it exceeds its time limit."""


class BrokerUnavailable(OrchestratorError):
    """Raised when the Celery broker cannot be reached."""


class DispatchDeferred(OrchestratorError):
    """Raised when a change was committed but its node could not be handed to the broker; the
    recovery pass will hand it over."""


class ClarifaiError(OrchestratorError):
    """Raised when a Clarifai call fails or its parameters cannot be resolved."""


class TokenError(OrchestratorError):
    """Raised when an API token cannot be created or revoked as asked."""


class RemoteError(OrchestratorError):
    """Raised when the orchestrator API (ORCHESTRATOR_URL) cannot be reached or refuses a call."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DefinitionNotFound(OrchestratorError):
    """Raised when no stored pipeline definition has the name given, or it is inactive."""


class InputError(OrchestratorError):
    """Raised when an input (JSON, a text, a number) is one the orchestrator will not store."""


class UsageError(OrchestratorError):
    """Raised when a command is given an argument it cannot use, such as a malformed run id."""


class DatabaseUnavailable(OrchestratorError):
    """Raised when the database cannot be reached or is not ready for the orchestrator."""
