"""Delete the audit entries older than AUDIT_RETENTION_DAYS (beat also runs it daily)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from crm.audit import audit_prune


class Command(BaseCommand):
    help = "Delete audit entries older than AUDIT_RETENTION_DAYS."

    def handle(self, *args, **options):
        deleted = audit_prune()
        self.stdout.write(
            f"Deleted {deleted:,} audit entr{'y' if deleted == 1 else 'ies'} older than "
            f"{settings.AUDIT_RETENTION_DAYS} days."
        )
