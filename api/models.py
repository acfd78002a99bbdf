"""API tokens and the raw webhook events received from shops."""

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

# Tokens look like "crm_<prefix>_<secret>"; the prefix is shown in lists and logs.
TOKEN_PREFIX_LEN = 8


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_generate() -> tuple[str, str]:
    """A new (full token, prefix) pair; only the token's hash is ever stored."""
    prefix = secrets.token_hex(TOKEN_PREFIX_LEN // 2)
    return f"crm_{prefix}_{secrets.token_urlsafe(32)}", prefix


class ApiTokenQuerySet(models.QuerySet):
    def live(self):
        return self.filter(revoked_at__isnull=True, user__is_active=True)


class ApiToken(models.Model):
    class Scope(models.TextChoices):
        READ = "read", "Read only"
        READ_WRITE = "read_write", "Read and write"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What uses it, e.g. 'web shop'.")
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.READ)
    prefix = models.CharField(max_length=TOKEN_PREFIX_LEN, unique=True, editable=False)
    # sha256 of the whole token: a leaked database does not leak usable tokens.
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} (crm_{self.prefix}_…)"

    @property
    def can_write(self) -> bool:
        return self.scope == self.Scope.READ_WRITE


class WebhookEvent(models.Model):
    class Source(models.TextChoices):
        STRIPE = "stripe", "Stripe"
        SHOPIFY = "shopify", "Shopify"

    source = models.CharField(max_length=10, choices=Source.choices)
    event_id = models.CharField(max_length=100)
    type = models.CharField(max_length=100, blank=True)
    payload = models.JSONField(default=dict)
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["source", "event_id"], name="webhook_event_unique")
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.type} {self.event_id}"
