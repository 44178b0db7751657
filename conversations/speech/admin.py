from django.contrib import admin

from avatarsite.tenants.scoping import TenantScopedAdmin, TenantScopedStackedInline

from .models import KanaReading, VoiceSettings


class VoiceSettingsInline(TenantScopedStackedInline):
    """Shown on the character page: a character's voice is edited with the character."""

    model = VoiceSettings
    can_delete = True
    fieldsets = (
        (
            "Text-to-speech",
            {
                "fields": (
                    "tts_provider",
                    "tts_voice",
                    "tts_model",
                    "tts_base_url",
                    "tts_api_key_env",
                    "tts_http_request",
                    "tts_speed",
                    "tts_sample_rate",
                    "style_map",
                    "replacements",
                    "alphabet_to_kana",
                )
            },
        ),
        (
            "Speech-to-text",
            {
                "fields": (
                    "stt_provider",
                    "stt_model",
                    "stt_base_url",
                    "stt_api_key_env",
                    "stt_language",
                    "stt_languages",
                    "stt_preprocess",
                    "stt_postprocess",
                )
            },
        ),
        ("Turn-taking (/ws)", {"fields": ("barge_in_seconds", "turn_end_hook")}),
    )


@admin.register(KanaReading)
class KanaReadingAdmin(TenantScopedAdmin):
    list_display = ("word", "reading", "created_at")
    search_fields = ("word", "reading")
