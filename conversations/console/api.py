"""Staff REST API for usage: daily roll-ups of turns, tokens and speech (usage.py)."""

from __future__ import annotations

from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from avatarsite.tenants.scoping import TenantScopedViewSetMixin, scoped
from characters.models import Character
from conversations.models import TurnRecord

from .usage import GROUPS, daily_usage, totals


class UsageQuery(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=366, default=30)
    group = serializers.ChoiceField(choices=list(GROUPS), required=False)
    tenant = serializers.SlugField(required=False, help_text="A tenant's slug.")
    character = serializers.SlugField(required=False, help_text="A character's slug.")


class UsageTotals(serializers.Serializer):
    turns = serializers.IntegerField()
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    speech_in_seconds = serializers.FloatField()
    speech_out_seconds = serializers.FloatField()


class UsageDay(UsageTotals):
    day = serializers.DateField()
    character = serializers.CharField(
        required=False, allow_null=True, help_text="The character's id, with group=character."
    )
    api_key = serializers.CharField(
        required=False, allow_null=True, help_text="The API key's id, with group=api_key."
    )
    end_user = serializers.CharField(
        required=False, allow_null=True, help_text="The end user's id, with group=end_user."
    )


class UsageReport(serializers.Serializer):
    """What `GET /api/usage/` answers (documents the response in the API schema)."""

    timezone = serializers.CharField()
    days = UsageDay(many=True)
    totals = UsageTotals()


class UsageViewSet(TenantScopedViewSetMixin, viewsets.GenericViewSet):
    """Usage per day for the last `days` days, on the character's clock when one `character`
    is named (UTC otherwise), optionally per `group`: character, api_key or end_user."""

    queryset = TurnRecord.objects.all()
    serializer_class = UsageReport

    @extend_schema(parameters=[UsageQuery], responses=UsageReport)
    def list(self, request: Request) -> Response:
        query = UsageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        wanted = query.validated_data
        turns: QuerySet[TurnRecord] = self.get_queryset()
        zone = ZoneInfo("UTC")
        if "tenant" in wanted:
            turns = turns.filter(tenant__slug=wanted["tenant"])
        if "character" in wanted:
            turns = turns.filter(character__slug=wanted["character"])
            # Only the user's own characters: another tenant's slug finds no turn, like an
            # unknown one.
            named = scoped(Character.objects.filter(slug=wanted["character"]), request.user)
            if "tenant" in wanted:
                named = named.filter(tenant__slug=wanted["tenant"])
            zone = next((character.zone for character in named[:1]), zone)
        end = timezone.now().astimezone(UTC)
        rows = daily_usage(
            turns, end - timedelta(days=wanted["days"]), end, zone, wanted.get("group")
        )
        return Response({"timezone": zone.key, "days": rows, "totals": totals(rows)})
