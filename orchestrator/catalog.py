"""Stored pipeline definitions: find one to run, and save one (bumping its version)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F

from orchestrator import definitions
from orchestrator.errors import DefinitionNotFound, OrchestratorError
from orchestrator.models import PipelineDefinition


def runnable(name: str) -> tuple[definitions.Definition, PipelineDefinition]:
    """The stored definition ``name``, parsed; refused when it is missing or inactive."""
    stored = PipelineDefinition.objects.filter(name=name).first()
    if stored is None:
        raise DefinitionNotFound(f"Pipeline definition not found: {name}")
    if not stored.is_active:
        raise DefinitionNotFound(
            f"Pipeline definition is inactive: {stored.name} "
            f"(save it again or set is_active in the admin to run it)"
        )
    return definitions.parse(stored.config, name=stored.name), stored


def save(
    data: Any, *, name: str | None = None, active: bool = True
) -> tuple[PipelineDefinition, str]:
    """Validate ``data`` and store it under ``name`` (else its own name field); the version is
    bumped only when something changed. Returns the stored definition and what happened:
    ``created``, ``updated`` or ``unchanged``. Raises DefinitionError with every problem when it
    is invalid."""
    name = name or (data.get("name") if isinstance(data, dict) else None)
    definition = definitions.parse(data, name=name)
    if not name:
        raise OrchestratorError('The definition has no name: add a "name" field or give one')
    with transaction.atomic():
        stored, created = PipelineDefinition.objects.select_for_update().get_or_create(
            name=definition.name,
            defaults={"config": data, "description": definition.description, "is_active": active},
        )
        if created:
            return stored, "created"
        if (stored.config, stored.description, stored.is_active) == (
            data,
            definition.description,
            active,
        ):
            return stored, "unchanged"
        PipelineDefinition.objects.filter(pk=stored.pk).update(
            config=data,
            description=definition.description,
            is_active=active,
            version=F("version") + 1,
        )
        stored.refresh_from_db()
    return stored, "updated"
