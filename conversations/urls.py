from django.urls import include, path

from . import views

urlpatterns = [
    path("chat", views.chat, name="chat"),
    path("start", views.start, name="start"),
    path("characters/<slug:slug>/chat", views.chat, name="character-chat"),
    path("characters/<slug:slug>/start", views.start, name="character-start"),
    path("", include("conversations.line.urls")),
]
