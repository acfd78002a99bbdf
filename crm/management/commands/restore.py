"""Prove a backup restores: into a scratch database, compared table by table with the live one."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from crm.backup import BackupError, backup_restore_check


class Command(BaseCommand):
    help = (
        "With --check: restore a backup into a scratch database (a temporary file or "
        "PostgreSQL database, removed afterwards) and compare the row count of every table "
        "with the live database. The live database is never written."
    )

    def add_arguments(self, parser):
        parser.add_argument("backup", help="the backup file (see BACKUP_DIR)")
        parser.add_argument(
            "--check",
            action="store_true",
            help="restore into a scratch database and compare (the only mode there is)",
        )

    def handle(self, *args, backup: str, check: bool, **options):
        if not check:
            raise CommandError(
                "Only --check is offered: restoring over the live database is done by hand "
                "(see the README), after stopping the stack."
            )
        try:
            result = backup_restore_check(Path(backup))
        except BackupError as exc:
            raise CommandError(f"FAILED: {exc}") from None
        self.stdout.write(result.verdict())
        if not result.matches:
            raise CommandError("The backup restores, but its row counts differ (see above).")
