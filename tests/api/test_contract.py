"""The API against its OpenAPI schema: the committed schema is current, and a property-based
run (schemathesis) of every operation on a live server finds no 500 and no off-schema answer."""

import io
from pathlib import Path

import pytest
import schemathesis
import yaml
from django.core.management import call_command
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from api import services
from api.models import token_hash
from tests.factories import CustomerFactory, PurchaseFactory, SegmentFactory, UserFactory

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "api" / "schema.yaml"

schema = schemathesis.openapi.from_path(str(SCHEMA_PATH))


def test_the_committed_schema_is_the_generated_one(db):
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    generated = yaml.safe_load(out.getvalue())
    committed = yaml.safe_load(SCHEMA_PATH.read_text())
    assert generated == committed, (
        "The API changed: regenerate with `python manage.py spectacular --file api/schema.yaml` "
        "and review the difference."
    )


@pytest.fixture
def contract(live_server, settings):
    """A live server with some data, a read_write token, and another user's token that no
    response may show."""
    settings.API_RATE_LIMIT = "100000/min"
    segment = SegmentFactory()
    customer = CustomerFactory(segment=segment)
    PurchaseFactory(customer=customer, external_source="shop", external_order_id="o1")
    shop = UserFactory(username="shop")
    _, token = services.api_token_create(user=shop, name="shop", scope="read_write")
    other = UserFactory(username="other", is_staff=True)
    _, secret = services.api_token_create(user=other, name="other", scope="read_write")
    return {
        "base_url": live_server.url,
        "headers": {"Authorization": f"Bearer {token}"},
        "secrets": [secret, token_hash(secret), token, token_hash(token)],
    }


def _no_token_shown(secrets):
    def no_token_in_response(ctx, response, case):
        text = response.text
        for value in secrets:
            if value in text:
                raise AssertionError("A response shows an API token or its hash.")
        return None

    return no_token_in_response


@pytest.mark.slow
@schema.parametrize()
@settings(
    # About a minute for the whole schema on a small machine.
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_within_its_schema(case, contract, transactional_db):
    case.call_and_validate(
        base_url=contract["base_url"],
        headers=contract["headers"],
        checks=[
            schemathesis.checks.not_a_server_error,
            response_schema_conformance,
            content_type_conformance,
            _no_token_shown(contract["secrets"]),
        ],
        timeout=10,
    )
