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
