"""URLs for standalone use: the Django admin."""

from django.contrib import admin
from django.urls import path

# The admin is registered here rather than autodiscovered at start-up, which keeps the CLI's
# start-up free of admin imports (settings use SimpleAdminConfig).
import orchestrator.admin  # noqa: F401

urlpatterns = [path("admin/", admin.site.urls)]
