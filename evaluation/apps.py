from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    """Dialog evaluation: scenarios a character is tried on, run through its real pipeline in
    a context of their own, judged by an LLM turn by turn and against a goal."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "evaluation"
    verbose_name = "Dialog evaluation"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (a deleted run's end users and turn records)
