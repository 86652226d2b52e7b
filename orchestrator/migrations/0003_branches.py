"""Branches: a run's single ``current_node`` (and ``resume_from``, ``dispatched_at``) gives way
to its node runs: every node ready or running has a row (QUEUED, RUNNING or RETRYING), joins
count the predecessors they still await, and each row knows when it was handed to the broker.

Rows are carried over: an active run's current node, and a paused run's resume node, become a
QUEUED node run where none exists yet; going back, the first open node becomes the current one.
"""

from django.db import migrations, models

import orchestrator.state

ACTIVE = ("QUEUED", "RUNNING", "PAUSING", "CANCELLING")
OPEN = ("QUEUED", "RUNNING", "RETRYING")


def _spec(config, node_id):
    """(type, position) of ``node_id`` in a run's config snapshot."""
    nodes = config.get("nodes", []) if isinstance(config, dict) else []
    for position, node in enumerate(nodes):
        if isinstance(node, dict) and node.get("id") == node_id:
            return str(node.get("type", "")), position
    return "", 0


def carry_over(apps, schema_editor):
    run_model = apps.get_model("orchestrator", "PipelineRun")
    node_model = apps.get_model("orchestrator", "NodeRun")
    # Before branches every node but the entry followed exactly one predecessor that was not
    # skipped; counting the entry too is harmless (a node with no predecessor never skips).
    node_model.objects.update(reached=1)
    runs = run_model.objects.filter(status__in=[*ACTIVE, "PAUSED"])
    for run in runs.only("id", "status", "current_node", "resume_from", "dispatched_at", "config"):
        paused = run.status == "PAUSED"
        node_id = run.resume_from if paused else run.current_node
        if not node_id:
            continue
        dispatched = None if paused else run.dispatched_at
        existing = node_model.objects.filter(run_id=run.pk, node_id=node_id).first()
        if existing is None:
            node_type, position = _spec(run.config, node_id)
            node_model.objects.create(
                run_id=run.pk,
                node_id=node_id,
                node_type=node_type,
                position=position,
                status="QUEUED",
                attempt=0,
                reached=1,
                dispatched_at=dispatched,
            )
        elif existing.status in ("QUEUED", "RETRYING"):
            existing.dispatched_at = dispatched
            existing.save(update_fields=["dispatched_at"])


def carry_back(apps, schema_editor):
    run_model = apps.get_model("orchestrator", "PipelineRun")
    node_model = apps.get_model("orchestrator", "NodeRun")
    for run in run_model.objects.filter(status__in=[*ACTIVE, "PAUSED", "FAILING"]):
        first = (
            node_model.objects.filter(run_id=run.pk, status__in=OPEN)
            .order_by("position", "id")
            .first()
        )
        if first is not None:
            if run.status == "PAUSED":
                run.resume_from = first.node_id
            else:
                run.current_node = first.node_id
                run.dispatched_at = first.dispatched_at
            run.save(update_fields=["current_node", "resume_from", "dispatched_at"])
    # The engine before branches recorded a node when it was claimed, never before.
    node_model.objects.filter(status__in=["QUEUED", "WAITING"], attempt=0).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("orchestrator", "0002_self_healing"),
    ]

    operations = [
        migrations.AddField(
            model_name="noderun",
            name="awaiting",
            field=models.PositiveIntegerField(
                default=0,
                help_text="Predecessors not ended yet (a join waits until none are left).",
            ),
        ),
        migrations.AddField(
            model_name="noderun",
            name="dispatched_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When the node was last handed to the broker "
                "(unset while the run is paused).",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="noderun",
            name="reached",
            field=models.PositiveIntegerField(
                default=0, help_text="Predecessors that ended without being skipped."
            ),
        ),
        migrations.AddField(
            model_name="noderun",
            name="reason",
            field=models.TextField(blank=True, default="", help_text="Why the node was skipped."),
        ),
        migrations.AlterField(
            model_name="noderun",
            name="status",
            field=models.CharField(
                choices=[
                    ("WAITING", "Waiting"),
                    ("QUEUED", "Queued"),
                    ("RUNNING", "Running"),
                    ("RETRYING", "Retrying"),
                    ("COMPLETED", "Completed"),
                    ("FAILED", "Failed"),
                    ("CANCELLED", "Cancelled"),
                    ("SKIPPED", "Skipped"),
                ],
                default=orchestrator.state.NodeStatus["QUEUED"],
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="pipelinerun",
            name="status",
            field=models.CharField(
                choices=[
                    ("QUEUED", "Queued"),
                    ("RUNNING", "Running"),
                    ("PAUSING", "Pausing"),
                    ("PAUSED", "Paused"),
                    ("CANCELLING", "Cancelling"),
                    ("FAILING", "Failing"),
                    ("COMPLETED", "Completed"),
                    ("FAILED", "Failed"),
                    ("CANCELLED", "Cancelled"),
                ],
                default=orchestrator.state.RunStatus["QUEUED"],
                max_length=16,
            ),
        ),
        migrations.RunPython(carry_over, carry_back),
        migrations.RemoveField(
            model_name="pipelinerun",
            name="current_node",
        ),
        migrations.RemoveField(
            model_name="pipelinerun",
            name="dispatched_at",
        ),
        migrations.RemoveField(
            model_name="pipelinerun",
            name="resume_from",
        ),
    ]
