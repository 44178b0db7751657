from django.apps import AppConfig


class TenantsConfig(AppConfig):
    """Operators' organisations; every operator-owned row belongs to one (docs/tenants.md)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "avatarsite.tenants"
    label = "tenants"
    verbose_name = "tenants"

    def ready(self) -> None:
        from corsheaders.signals import check_request_enabled

        from .config_cache import watch
        from .models import ProviderSecret
        from .origins import origin_allowed

        # Turns read the tenant's secrets from its cached configuration.
        watch(ProviderSecret)

        check_request_enabled.connect(origin_allowed, dispatch_uid="tenant-origins")
