from django.contrib import admin
from django.urls import include, path

from . import views

handler404 = views.not_found

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/", include("avatarsite.api_urls")),
    path("memory/", include("memory.urls")),
    path("", include("conversations.urls")),
    path("", include("conversations.line.urls")),
    path("", include("channels_app.urls")),
]
