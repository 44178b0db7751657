from django.apps import AppConfig


class LineConfig(AppConfig):
    """LINE Messaging API channels per character: verified webhooks, at-most-once events handled
    in Celery, replies with push fallback, operator pushes."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "conversations.line"
    label = "line"
    verbose_name = "LINE"
