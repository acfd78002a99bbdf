"""The import contracts of pyproject.toml ([tool.importlinter]): a new cycle fails the suite."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS = (
    "Apps depend downward only: pages | api > offers > segmentation > crm",
    "Pure segmentation modules do not import Django",
    "Views and admin modules are imported only by URL configurations",
)


def test_every_import_contract_is_kept():
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    for name in CONTRACTS:
        assert f"{name} KEPT" in done.stdout


def test_web_processes_never_load_scikit_learn():
    """Pages, admin and API import no engine: only workers (and --sync runs) load it."""
    probe = (
        "import sys, django; django.setup(); "
        "from django.core.wsgi import get_wsgi_application; get_wsgi_application(); "
        "from django.urls import get_resolver; get_resolver().url_patterns; "
        "import segmentation.admin, pages.views, offers.views, api.views; "
        "print('sklearn' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
