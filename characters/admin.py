from django.contrib import admin

from .models import Character


@admin.register(Character)
class CharacterAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "slug",
        "language",
        "timezone",
        "llm_provider",
        "llm_model",
        "is_default",
        "is_active",
    )
    list_filter = ("llm_provider", "language", "is_active", "is_default")
    search_fields = ("name", "slug", "persona")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "slug", "persona", "language", "timezone")}),
        (
            "LLM",
            {
                "fields": (
                    "llm_provider",
                    "llm_model",
                    "llm_temperature",
                    "llm_base_url",
                    "llm_api_key_env",
                )
            },
        ),
        (
            "Conversation",
            {
                "fields": (
                    "context_timeout_seconds",
                    "greeting",
                    "apology",
                    "face_icons",
                    "artifact_catalog",
                )
            },
        ),
        ("Status", {"fields": ("is_default", "is_active", "created_at", "updated_at")}),
    )
