"""The HTTP API: JSON over the same control, engine and catalog functions as the CLI.

Built on django-ninja; the OpenAPI 3 schema is served at ``/api/schema`` and browsable
documentation (assets shipped in the package) at ``/api/docs``.
"""
