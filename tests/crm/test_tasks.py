import pytest

from crm.tasks import crm_health_check
from tests.factories import CustomerFactory


def test_health_check_reports_ok_and_the_database_it_sees(db):
    CustomerFactory.create_batch(2)

    result = crm_health_check.apply().get()

    assert result["status"] == "ok"
    assert result["customers"] == 2
    assert result["hostname"]


@pytest.mark.worker
def test_health_check_runs_on_a_real_worker_that_sees_the_test_database(live_celery_worker):
    CustomerFactory.create_batch(3)

    result = crm_health_check.delay().get(timeout=30)

    assert result["status"] == "ok", live_celery_worker.log()
    assert result["customers"] == 3, live_celery_worker.log()


@pytest.mark.worker
def test_the_real_worker_sees_rows_committed_after_it_started(live_celery_worker):
    assert crm_health_check.delay().get(timeout=30)["customers"] == 0
    CustomerFactory()

    assert crm_health_check.delay().get(timeout=30)["customers"] == 1
