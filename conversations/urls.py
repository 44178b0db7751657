from django.urls import include, path

from . import dify_api, openai_api, views
from .speech import views as speech

urlpatterns = [
    path("chat", views.chat, name="chat"),
    path("start", views.start, name="start"),
    path("characters/<slug:slug>/chat", views.chat, name="character-chat"),
    path("characters/<slug:slug>/start", views.start, name="character-start"),
    # Dify: AIAvatarKit serves it at the root, Dify's own SDKs call <base>/v1/chat-messages.
    path("chat-messages", dify_api.chat_messages, name="dify-chat-messages"),
    path("v1/chat-messages", dify_api.chat_messages),
    path("characters/<slug:slug>/chat-messages", dify_api.chat_messages),
    path("v1/chat/completions", openai_api.chat_completions, name="openai-chat-completions"),
    path("v1/models", openai_api.models, name="openai-models"),
    path("transcribe", speech.transcribe, name="transcribe"),
    path("stt", speech.stt, name="stt"),
    path("synthesize", speech.synthesize, name="synthesize"),
    path("tts", speech.synthesize, name="tts"),
    path("", include("conversations.line.urls")),
]
