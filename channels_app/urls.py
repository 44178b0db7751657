from django.urls import path

from . import views

urlpatterns = [
    path("ws/sessions", views.sessions, name="live-sessions"),
    path("voice/", views.voice_client, name="voice-client"),
]
