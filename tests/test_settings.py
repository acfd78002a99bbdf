"""Settings come from the environment."""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_choice, env_int


def _settings_in_subprocess(env: dict[str, str], expression: str):
    code = (
        "import django, json; django.setup(); from django.conf import settings; "
        f"print(json.dumps({expression}))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SEGMENTATION_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_segmentation_engine_can_be_tuned_from_the_environment():
    engine = _settings_in_subprocess(
        {"SEGMENTATION_K_MIN": "3", "SEGMENTATION_K_MAX": "6", "SEGMENTATION_METHOD": "kmeans"},
        "settings.SEGMENTATION_ENGINE",
    )

    assert engine == {"k_min": 3, "k_max": 6, "method": "kmeans"}


def test_without_those_variables_the_engine_keeps_its_own_defaults():
    assert _settings_in_subprocess({}, "settings.SEGMENTATION_ENGINE") == {}


def _import_settings(env: dict[str, str], var_dir) -> subprocess.CompletedProcess:
    """Import the settings module alone (no django.setup) in a clean subprocess."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DEBUG", "SECRET_KEY", "DJANGO_ENV", "ALLOWED_HOSTS", "DATABASE_URL"}
    }
    return subprocess.run(
        [sys.executable, "-c", "import config.settings as s; print(s.SECRET_KEY)"],
        env={**clean, "VAR_DIR": str(var_dir), **env},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("value", ["ture", "2", "enabled", "nope"])
def test_a_boolean_that_is_not_one_names_the_variable_and_the_accepted_values(value, tmp_path):
    result = _import_settings({"DEBUG": value}, tmp_path / "var")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DEBUG must be 1/0, true/false, yes/no or on/off" in result.stderr
    assert repr(value) in result.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [("TRUE", True), ("Yes", True), (" on ", True), ("1", True), ("Off", False), ("NO", False)],
)
def test_booleans_are_read_in_any_case(value, expected, monkeypatch):
    monkeypatch.setenv("CRM_PROBE", value)
    assert env_bool("CRM_PROBE", default=not expected) is expected


def test_an_empty_variable_means_the_default(monkeypatch):
    monkeypatch.setenv("CRM_PROBE", "")
    assert env_bool("CRM_PROBE", default=True) is True
    assert env_int("CRM_PROBE", 7) == 7
    assert env_choice("CRM_PROBE", "a", ("a", "b")) == "a"


def test_a_bad_whole_number_names_the_variable(tmp_path):
    result = _import_settings({"CONN_MAX_AGE": "60s"}, tmp_path / "var")

    assert result.returncode != 0
    assert "CONN_MAX_AGE must be a whole number, not '60s'" in result.stderr


def test_numbers_out_of_range_and_unknown_choices_are_refused(monkeypatch):
    monkeypatch.setenv("CRM_PROBE", "-1")
    with pytest.raises(ImproperlyConfigured, match="CRM_PROBE must be 0 or more, not -1"):
        env_int("CRM_PROBE", 5, low=0)
    monkeypatch.setenv("CRM_PROBE", "staging")
    with pytest.raises(ImproperlyConfigured, match="CRM_PROBE must be one of a, b"):
        env_choice("CRM_PROBE", "a", ("a", "b"))


def test_an_unknown_django_env_is_refused_instead_of_meaning_development(tmp_path):
    result = _import_settings({"DJANGO_ENV": "prod"}, tmp_path / "var")

    assert result.returncode != 0
    assert "DJANGO_ENV must be one of development, production, not 'prod'" in result.stderr


def test_importing_settings_with_a_fresh_var_dir_creates_nothing_on_disk(tmp_path):
    var_dir = tmp_path / "var"

    first = _import_settings({}, var_dir)
    second = _import_settings({}, var_dir)

    assert first.returncode == 0, first.stderr
    assert not var_dir.exists()
    assert list(tmp_path.iterdir()) == []
    # The development key is stable across restarts, so sessions survive them.
    assert first.stdout == second.stdout
    assert len(first.stdout.strip()) >= 50


def test_the_development_key_file_written_by_runstack_is_used_when_present(tmp_path):
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    (var_dir / "secret_key").write_text("k" * 60 + "\n")

    result = _import_settings({}, var_dir)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "k" * 60


def test_production_without_a_secret_key_refuses_to_start(tmp_path):
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    (var_dir / "secret_key").write_text("k" * 60)  # a development key is never enough

    result = _import_settings(
        {"DJANGO_ENV": "production", "ALLOWED_HOSTS": "crm.example.com"}, var_dir
    )

    assert result.returncode != 0
    assert "SECRET_KEY must be set when DJANGO_ENV=production" in result.stderr


def test_the_sqlite_database_folder_is_made_by_the_first_connection(tmp_path):
    var_dir = tmp_path / "var"
    code = (
        "import django; django.setup(); from django.db import connection; "
        "connection.ensure_connection(); print(connection.vendor)"
    )
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DEBUG"}}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "config.settings"},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("sqlite")
    assert (var_dir / "db.sqlite3").exists()
