"""Locale formats for the orchestrator's standalone settings (FORMAT_MODULE_PATH)."""
