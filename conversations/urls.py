from django.urls import path

from . import views
from .speech import views as speech

urlpatterns = [
    path("chat", views.chat, name="chat"),
    path("start", views.start, name="start"),
    path("characters/<slug:slug>/chat", views.chat, name="character-chat"),
    path("characters/<slug:slug>/start", views.start, name="character-start"),
    path("transcribe", speech.transcribe, name="transcribe"),
    path("stt", speech.stt, name="stt"),
    path("synthesize", speech.synthesize, name="synthesize"),
    path("tts", speech.synthesize, name="tts"),
]
