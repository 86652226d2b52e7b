"""The WSGI application that ``orchestrator serve`` runs (any WSGI server can run it too).

With no broker configured, runs started or resumed from the console or the API execute in a
background thread of the serving process, never in the thread answering the request.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")
os.environ.setdefault(
    "ORCHESTRATOR_INLINE_DISPATCHER", "orchestrator.background.BackgroundDispatcher"
)

application = get_wsgi_application()
