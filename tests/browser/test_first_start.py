"""First start in a real browser: an empty database, the welcome, demo data, and the first
segmentation run followed on the dashboard as a real Celery worker computes it, without a
reload. Screenshots at a phone's and a laptop's width land in a temporary folder."""

import json

import pytest
from django.urls import reverse

from pages import demo
from segmentation.models import SegmentationRun
from tests.browser.test_pages import PASSWORD, _log_in, browser, owner, page  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DEMO_CUSTOMERS = 300
WIDTHS = (390, 1366)
RUN_TIMEOUT_MS = 180_000

# Records every sentence the progress panel shows, with the page load it belongs to, in the
# tab's sessionStorage (which outlives the reload at the end of the run).
PROGRESS_RECORDER = """
(() => {
  const load = String(performance.timeOrigin);
  document.addEventListener("DOMContentLoaded", () => {
    const box = document.querySelector("[data-run-progress]");
    if (!box) { return; }
    const words = box.querySelector(".run-progress-words");
    const record = () => {
      const seen = JSON.parse(sessionStorage.getItem("progress-seen") || "[]");
      seen.push({ load: load, text: words.textContent, active: box.dataset.active });
      sessionStorage.setItem("progress-seen", JSON.stringify(seen));
    };
    record();
    const changes = { childList: true, characterData: true, subtree: true };
    new MutationObserver(record).observe(words, changes);
  });
})();
"""


def _shots(tab, folder, name: str) -> None:
    for width in WIDTHS:
        tab.set_viewport_size({"width": width, "height": 900})
        tab.screenshot(path=str(folder / f"{name}-{width}.png"), full_page=True)
    tab.set_viewport_size({"width": 1366, "height": 900})


@pytest.mark.worker
@pytest.mark.slow
def test_owner_starts_from_nothing_loads_demo_data_and_watches_the_first_run(
    page,  # noqa: F811
    live_server,
    owner,  # noqa: F811
    live_celery_worker,
    monkeypatch,
    tmp_path,
):
    monkeypatch.setattr(demo, "DEMO_CUSTOMERS", DEMO_CUSTOMERS)
    page.add_init_script(PROGRESS_RECORDER)

    _log_in(page, live_server)
    welcome = page.locator("#welcome")
    assert "Import customers (CSV)" in welcome.inner_text()
    assert "every regular customer bought on time" not in page.content()
    _shots(page, tmp_path, "01-welcome")

    page.click("#welcome button:text-is('Load demo data')")
    page.wait_for_url(f"{live_server.url}{reverse('pages:dashboard')}")
    assert f"Demo data loaded: {DEMO_CUSTOMERS} customers" in page.locator(".messages").inner_text()
    panel = page.locator("#run-progress")
    run = SegmentationRun.objects.get()
    assert f"Run #{run.pk}" in panel.inner_text()
    _shots(page, tmp_path, "02-run-progress")

    # The run ends; the page said so on its own, then reloaded once into the new segments.
    page.wait_for_function(
        "() => { const b = document.querySelector('[data-run-progress]');"
        " return b && b.dataset.active === 'false'; }",
        timeout=RUN_TIMEOUT_MS,
    )
    page.wait_for_selector("a.segcard", timeout=30_000)
    run.refresh_from_db()
    assert run.status == SegmentationRun.Status.SUCCEEDED, (
        f"{run.status} {run.error}\n{live_celery_worker.log()}"
    )

    seen = json.loads(page.evaluate("() => sessionStorage.getItem('progress-seen')"))
    loads = {}
    for entry in seen:
        loads.setdefault(entry["load"], []).append(entry)
    first_load = next(iter(loads.values()))
    texts = [entry["text"] for entry in first_load]
    # Within the one page load: it started unfinished (waiting, or already under way when the
    # worker is quick) and ended finished, with no reload.
    assert texts[0].startswith(f"Run #{run.pk}: "), texts
    assert "Finished" not in texts[0], texts
    assert texts[-1].startswith(f"Run #{run.pk}: Finished. Your first segments:"), texts
    assert len(loads) >= 2, "the page reloads once after the run"
    assert "Finished." in page.locator("#run-progress").inner_text()
    _shots(page, tmp_path, "03-after-the-run")
    print(f"Screenshots in {tmp_path}: {sorted(p.name for p in tmp_path.iterdir())}")
    print("Sentences seen before the reload:", texts)


def test_the_runs_admin_page_moves_the_bar_of_a_running_run_without_a_reload(
    page,  # noqa: F811
    live_server,
    owner,  # noqa: F811
    tmp_path,
):
    run = SegmentationRun.objects.create(
        status=SegmentationRun.Status.RUNNING, active_slot=1, phase="fit", progress=40
    )
    _log_in(page, live_server)
    page.goto(f"{live_server.url}{reverse('admin:segmentation_segmentationrun_changelist')}")
    panel = page.locator("#run-progress")
    assert "Grouping customers who buy alike… 40 %" in panel.inner_text()
    page.evaluate("() => { window.sameLoad = true; }")
    _shots(page, tmp_path, "04-admin-runs")

    SegmentationRun.objects.filter(pk=run.pk).update(phase="writing", progress=88)
    page.wait_for_function(
        "() => document.querySelector('.run-progress-words').textContent.includes('88 %')",
        timeout=15_000,
    )
    assert page.evaluate("() => window.sameLoad") is True
    assert "Placing customers in segments… 88 %" in panel.inner_text()
    print(f"Screenshots in {tmp_path}")
