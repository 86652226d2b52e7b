"""Who may do what, in the console and the API alike: staff see; permissions act."""

from __future__ import annotations

from typing import Any

#: What may start and control runs, and what may save definitions.
CONTROL_PERMISSION = "orchestrator.change_pipelinerun"
SAVE_PERMISSIONS = ("orchestrator.add_pipelinedefinition", "orchestrator.change_pipelinedefinition")

VIEW_DENIED = "Permission denied: the console and the API are for staff users."
CONTROL_DENIED = (
    f"Permission denied: starting and controlling runs needs the {CONTROL_PERMISSION} permission."
)
SAVE_DENIED = (
    "Permission denied: saving definitions needs the "
    + " and ".join(SAVE_PERMISSIONS)
    + " permissions."
)


def may_view(user: Any) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def may_control(user: Any) -> bool:
    return may_view(user) and user.has_perm(CONTROL_PERMISSION)


def may_save(user: Any) -> bool:
    return may_view(user) and user.has_perms(SAVE_PERMISSIONS)
