"""The web console: server-rendered pages over the same control and engine functions as the CLI."""
