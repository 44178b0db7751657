"""Times as operators read them: on a stated clock, with the zone printed."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from django.utils.html import format_html
from django.utils.safestring import SafeString


def with_zone(value: datetime | None, zone: ZoneInfo) -> SafeString | str:
    """`value` on `zone`'s clock with its abbreviation, e.g. "2026-12-02 01:30 JST", and the
    zone's name as a tooltip; "-" for none."""
    if value is None:
        return "-"
    local = value.astimezone(zone)
    return format_html('<span title="{}">{}</span>', zone.key, f"{local:%Y-%m-%d %H:%M %Z}")
