"""``pr``: the short name of ``pipelinerun``."""

from commands.management.commands.pipelinerun import Command as PipelineRunCommand


class Command(PipelineRunCommand):
    pass
