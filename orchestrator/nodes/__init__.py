"""Node types: the handler contract, the registry and one module per built-in type."""

from orchestrator.nodes.base import NodeContext, NodeHandler
from orchestrator.nodes.registry import get, known_types, register

__all__ = ["NodeContext", "NodeHandler", "get", "known_types", "register"]
