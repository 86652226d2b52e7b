"""URLs for standalone use: the console at ``/``, the API at ``/api/``, the admin at ``/admin/``."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

# The admin is registered here rather than autodiscovered at start-up, which keeps the CLI's
# start-up free of admin imports (settings use SimpleAdminConfig).
import orchestrator.admin  # noqa: F401
from orchestrator.api.routes import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="orchestrator_web/login.html"),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("orchestrator.web.urls")),
]
