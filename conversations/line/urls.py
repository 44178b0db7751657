from django.urls import path

from . import views

# The webhook is routed in avatarsite/asgi.py, ahead of Django (see webhook.py).
urlpatterns = [
    path("line/<slug:slug>/push", views.push, name="line-push"),
    path("line/<slug:slug>/start", views.start, name="line-start"),
]
