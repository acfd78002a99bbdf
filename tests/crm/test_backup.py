"""Backups: written, pruned to BACKUP_KEEP, scheduled daily, and proven to restore."""

import io
import os
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django_celery_beat.models import PeriodicTask

from crm import backup
from crm.models import Customer
from crm.tasks import database_backup
from tests.factories import CustomerFactory, PurchaseFactory

# pg_dump and the backup API read committed data: these tests commit. (Not with
# serialized_rollback: after another transactional test's flush has recreated the content
# types, reloading the serialized ones collides with them.)
committing = pytest.mark.django_db(transaction=True)


@pytest.fixture
def backup_dir(settings, tmp_path):
    settings.BACKUP_DIR = tmp_path / "backups"
    return settings.BACKUP_DIR


@committing
def test_a_backup_restores_with_the_same_row_counts_as_the_live_database(backup_dir):
    customer = CustomerFactory(name="Ann")
    PurchaseFactory(customer=customer)
    out = io.StringIO()

    call_command("backup", stdout=out)

    (path,) = backup.backups_list()
    assert path.parent == backup_dir
    assert path.suffix == (".sqlite3" if connection.vendor == "sqlite" else ".dump")
    assert f"Backed up to {path}" in out.getvalue()
    out = io.StringIO()
    call_command("restore", str(path), check=True, stdout=out)
    assert out.getvalue().startswith(f"OK: {path.name} restores:")


@committing
def test_the_check_names_the_tables_that_changed_since_the_backup(backup_dir):
    CustomerFactory()
    path = backup.database_backup()
    CustomerFactory()

    result = backup.backup_restore_check(path)

    assert not result.matches
    assert result.differences == {Customer._meta.db_table: (1, 2)}
    assert "crm_customer: 1 rows in the backup, 2 rows live" in result.verdict()
    with pytest.raises(CommandError, match="row counts differ"):
        call_command("restore", str(path), check=True, stdout=io.StringIO())


@committing
def test_a_missing_or_damaged_file_fails_with_a_clear_message(backup_dir, tmp_path):
    with pytest.raises(CommandError, match="FAILED: There is no backup file"):
        call_command("restore", str(tmp_path / "nothing.dump"), check=True)
    damaged = tmp_path / "damaged.dump"
    damaged.write_bytes(b"not a backup at all" * 100)
    with pytest.raises(CommandError, match="FAILED: "):
        call_command("restore", str(damaged), check=True)
    with pytest.raises(CommandError, match="Only --check"):
        call_command("restore", str(damaged))


@committing
def test_only_the_newest_backup_keep_backups_are_kept(backup_dir, settings):
    settings.BACKUP_KEEP = 2
    made = []
    for age in (3, 2, 1):
        path = backup.database_backup()
        stamp = time.time() - age * 86_400
        os.utime(path, (stamp, stamp))
        made.append(path)

    path = backup.database_backup()

    assert backup.backups_list() == [path, made[2]]


@pytest.mark.django_db  # the schedule is a migration's row, there before any test's flush
def test_backups_are_scheduled_daily():
    task = PeriodicTask.objects.get(task="crm.tasks.database_backup")
    assert task.enabled and (task.crontab.hour, task.crontab.minute) == ("2", "30")


@committing
def test_the_scheduled_task_writes_one_backup(backup_dir):
    path = database_backup.apply().get()

    assert [str(p) for p in backup.backups_list()] == [path]
