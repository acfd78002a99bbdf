"""A CSV import in a real browser: the upload answers at once, the progress page follows the
background check to the preview, and the confirmed import to its result."""

import pytest
from django.urls import reverse

from crm.models import Customer, ImportJob
from tests.browser import test_pages as staff_pages

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The staff pages' browser fixtures and functions, shared rather than copied.
browser, page, owner = staff_pages.browser, staff_pages.page, staff_pages.owner
_log_in, _shot = staff_pages._log_in, staff_pages._shot


def test_the_owner_uploads_a_csv_and_watches_it_checked_then_imported(
    page, live_server, owner, gated_worker, tmp_path
):
    csv = tmp_path / "spring-fair.csv"
    rows = "".join(f"guest{i}@example.com,Guest {i},Leeds\n" for i in range(1, 31))
    csv.write_text("email,name,city\n" + rows + "not-an-email,Broken,York\n")
    _log_in(page, live_server)

    page.goto(f"{live_server.url}{reverse('admin:crm_customer_import')}")
    page.set_input_files("#id_file", str(csv))
    page.click("input[type=submit][value=Preview]")
    page.wait_for_selector("#import-progress")
    assert "Waiting for the worker" in page.locator("#import-progress").inner_text()

    # The worker starts: the page follows it without a reload by the owner.
    job = ImportJob.objects.get()
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.PREVIEWING, progress=40, rows_read=12
    )
    page.wait_for_selector("text=40 % of the file read (12 rows)")
    assert page.locator("#import-progress progress").get_attribute("value") == "40"
    _shot(page, "30-import-progress")

    gated_worker.set()
    page.wait_for_selector("#import-preview", timeout=30_000)
    body = page.locator("#content").inner_text()
    assert "Rows read: 31." in body and "Invalid rows: 1" in body
    assert "not-an-email" in body
    _shot(page, "31-import-preview")
    assert Customer.objects.count() == 0

    page.click("input[name=only_valid]")
    page.wait_for_selector("text=Customers were created: 30.", timeout=30_000)
    assert "Import another file" in page.locator("#content").inner_text()
    _shot(page, "32-import-result")
    assert Customer.objects.count() == 30
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE and not job.upload_path.exists()
