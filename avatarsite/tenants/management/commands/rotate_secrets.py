"""Re-encrypt every provider secret with the newest key of SECRETS_ENCRYPTION_KEYS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from avatarsite.tenants import crypto
from avatarsite.tenants.models import ProviderSecret


class Command(BaseCommand):
    help = (
        "Re-encrypt all provider secrets with the first key of SECRETS_ENCRYPTION_KEYS; after "
        "it, keys listed after the first can be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        rotated = 0
        with transaction.atomic():
            for secret in ProviderSecret.objects.select_for_update().only("pk", "ciphertext"):
                secret.ciphertext = crypto.rotate(secret.ciphertext)
                secret.save(update_fields=["ciphertext", "updated_at"])
                rotated += 1
        self.stdout.write(f"Re-encrypted {rotated} provider secret(s) with the newest key.")
