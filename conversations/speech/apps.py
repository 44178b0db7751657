from django.apps import AppConfig


class SpeechConfig(AppConfig):
    """Voice activity detection, speech-to-text and text-to-speech, with per-character voices."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "conversations.speech"
    label = "speech"
    verbose_name = "speech"

    def ready(self) -> None:
        from avatarsite.tenants.config_cache import watch

        from .models import VoiceSettings

        # Turns read a character's voice from the tenant's cached configuration.
        watch(VoiceSettings)
