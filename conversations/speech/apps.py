from django.apps import AppConfig


class SpeechConfig(AppConfig):
    """Voice activity detection, speech-to-text and text-to-speech, with per-character voices."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "conversations.speech"
    label = "speech"
    verbose_name = "speech"
