from django.urls import path

from .transports import aiavatar, dify_api, dify_app, openai_api, speech_api

urlpatterns = [
    path("chat", aiavatar.chat, name="chat"),
    path("start", aiavatar.start, name="start"),
    path("characters/<slug:slug>/chat", aiavatar.chat, name="character-chat"),
    path("characters/<slug:slug>/start", aiavatar.start, name="character-start"),
    path("feedback", aiavatar.feedback, name="feedback"),
    path("characters/<slug:slug>/feedback", aiavatar.feedback, name="character-feedback"),
    # Dify: AIAvatarKit serves it at the root, Dify's own SDKs call <base>/v1/chat-messages.
    path("chat-messages", dify_api.chat_messages, name="dify-chat-messages"),
    path("v1/chat-messages", dify_api.chat_messages),
    path("characters/<slug:slug>/chat-messages", dify_api.chat_messages),
    path("v1/chat/completions", openai_api.chat_completions, name="openai-chat-completions"),
    path("v1/models", openai_api.models, name="openai-models"),
    path("v1/models/<str:model_id>", openai_api.model, name="openai-model"),
    path("transcribe", speech_api.transcribe, name="transcribe"),
    path("stt", speech_api.stt, name="stt"),
    path("synthesize", speech_api.synthesize, name="synthesize"),
    path("tts", speech_api.synthesize, name="tts"),
] + [
    # The rest of Dify's app API, under the same three roots as /chat-messages.
    path(f"{root}{route}", view, name=name if not root else None)
    for root in ("", "v1/", "characters/<slug:slug>/")
    for route, view, name in dify_app.ROUTES
]
