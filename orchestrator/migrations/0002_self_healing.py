"""Claims name their holder and count lost workers; mirrored transitions carry their claim."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("orchestrator", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="noderun",
            name="holder",
            field=models.CharField(
                blank=True,
                default="",
                help_text="The process holding the claim: host, pid namespace, pid and start time.",
                max_length=255,
            ),
        ),
        migrations.AddField(
            model_name="noderun",
            name="losses",
            field=models.PositiveIntegerField(
                default=0,
                help_text="How many times a worker was lost while running this attempt.",
            ),
        ),
        migrations.AddField(
            model_name="runevent",
            name="mirror_until",
            field=models.DateTimeField(
                blank=True,
                help_text="For a mirrored transition: until when one delivery holds the right "
                "to patch Clarifai with it (far in the future once it was patched or refused).",
                null=True,
            ),
        ),
    ]
