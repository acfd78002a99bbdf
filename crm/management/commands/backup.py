"""Back up the database into BACKUP_DIR, keeping the newest BACKUP_KEEP backups."""

from django.core.management.base import BaseCommand, CommandError

from crm.backup import BackupError, database_backup


class Command(BaseCommand):
    help = (
        "Back up the database into BACKUP_DIR (SQLite: online backup; PostgreSQL: pg_dump, "
        "custom format) and keep the newest BACKUP_KEEP backups."
    )

    def handle(self, *args, **options):
        try:
            path = database_backup()
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        size = path.stat().st_size
        self.stdout.write(f"Backed up to {path} ({size / 1_048_576:.1f} MB).")
