import io

import pytest
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.test import Client

from api.models import ApiToken, token_hash

pytestmark = pytest.mark.django_db


def test_the_command_prints_the_token_once_and_stores_its_hash(shop_user):
    out = io.StringIO()
    call_command(
        "api_token_create",
        "--user",
        "shop",
        "--scope",
        "read_write",
        "--name",
        "web shop",
        stdout=out,
        stderr=io.StringIO(),
    )
    token = out.getvalue().strip()
    api_token = ApiToken.objects.get()
    assert token.startswith(f"crm_{api_token.prefix}_")
    assert api_token.token_hash == token_hash(token)
    assert (api_token.scope, api_token.name, api_token.user) == (
        "read_write",
        "web shop",
        shop_user,
    )


def test_the_command_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="No user"):
        call_command("api_token_create", "--user", "nobody", "--name", "x", stdout=io.StringIO())


def test_the_admin_add_page_shows_the_new_token_once(staff_client, shop_user):
    response = staff_client.post(
        "/admin/api/apitoken/add/",
        {"user": shop_user.pk, "name": "web shop", "scope": "read"},
        follow=True,
    )
    assert response.status_code == 200
    api_token = ApiToken.objects.get()
    shown = [str(m) for m in get_messages(response.wsgi_request)] or [
        m.message for m in response.context["messages"]
    ]
    token = next(word for text in shown for word in text.split() if word.startswith("crm_"))
    assert api_token.token_hash == token_hash(token)
    page = staff_client.get(f"/admin/api/apitoken/{api_token.pk}/change/")
    assert token not in page.content.decode()


def test_the_admin_revokes_tokens(staff_client, write_token, api):
    api_token, _ = write_token
    staff_client.post(
        "/admin/api/apitoken/",
        {"action": "revoke", "_selected_action": [api_token.pk]},
    )
    api_token.refresh_from_db()
    assert api_token.revoked_at is not None
    assert api.get("/api/v1/customers/").status_code == 401


def test_the_docs_page_is_for_logged_in_staff_and_served_without_a_cdn(staff_client):
    page = staff_client.get("/api/v1/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "drf_spectacular_sidecar" in html and "cdn" not in html.lower()
    assert Client().get("/api/v1/docs/").status_code == 302
    schema = staff_client.get("/api/v1/schema/")
    assert schema.status_code == 200 and b"openapi: 3" in schema.content


def test_the_schema_is_for_token_holders_and_staff(read_api):
    assert read_api.get("/api/v1/schema/").status_code == 200
    assert Client().get("/api/v1/schema/").status_code == 401
