"""The console's URLs (namespace ``console``)."""

from __future__ import annotations

from django.urls import path

from orchestrator.web import views

app_name = "console"

urlpatterns = [
    path("", views.run_list, name="runs"),
    path("runs/<int:run_id>/", views.run_detail, name="run"),
    path("runs/<int:run_id>/live", views.run_live, name="run-live"),
    path("runs/<int:run_id>/<str:verb>", views.run_signal, name="run-signal"),
    path("definitions/", views.definition_list, name="definitions"),
    path("definitions/validate", views.definition_validate, name="validate"),
    path("definitions/<str:name>/", views.definition_detail, name="definition"),
]
