"""The staff REST API under /api/, with its OpenAPI schema and documentation pages."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from avatarsite.tenants.api import ProviderSecretViewSet, TenantOriginViewSet
from channels_app.api import LiveSessionViewSet
from channels_app.liveavatar.api import LiveAvatarAgentViewSet
from characters.api import CharacterViewSet
from conversations.api import (
    ApiKeyViewSet,
    ContextViewSet,
    EndUserViewSet,
    GuardrailViewSet,
    McpServerViewSet,
    SharedMessageViewSet,
)
from conversations.console.api import UsageViewSet
from conversations.speech.api import VoiceSettingsViewSet
from conversations.transports.token_api import tokens
from memory.api import MemoryItemViewSet

router = DefaultRouter()
router.register("characters", CharacterViewSet)
router.register("end-users", EndUserViewSet)
router.register("contexts", ContextViewSet, basename="context")
router.register("api-keys", ApiKeyViewSet)
router.register("live-sessions", LiveSessionViewSet, basename="live-session")
router.register("liveavatar-agents", LiveAvatarAgentViewSet)
router.register("provider-secrets", ProviderSecretViewSet)
router.register("allowed-origins", TenantOriginViewSet)
router.register("memories", MemoryItemViewSet, basename="memory")
router.register("usage", UsageViewSet, basename="usage")
router.register("shared-messages", SharedMessageViewSet, basename="shared-message")
router.register("guardrails", GuardrailViewSet)
router.register("mcp-servers", McpServerViewSet)
router.register("voices", VoiceSettingsViewSet, basename="voice")

urlpatterns = [
    # Not the staff API: tenants' servers call it with an API key (transports/token_api.py).
    path("tokens", tokens, name="browser-tokens"),
    path("", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
