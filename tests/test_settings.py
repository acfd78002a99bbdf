"""Settings come from the environment."""

import json
import os
import subprocess
import sys

from django.conf import settings


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
