"""Roles: every URL of the URLconf, for each role and method, allowed or forbidden.

The pages' expectations are written out below; the admin's and the API's follow the model
permissions of each role, whose lists are checked against the groups first.
"""

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django_celery_beat import models as beat

from api import services as api_services
from api.models import WebhookEvent
from crm.audit import SYSTEM, audit_record
from crm.models import AuditEntry
from offers.models import Delivery
from segmentation.models import SegmentMembershipChange
from tests.factories import (
    CustomerFactory,
    FeedbackFactory,
    OfferFactory,
    OfferResponseFactory,
    PurchaseFactory,
    SegmentationRunFactory,
    SegmentFactory,
    TagFactory,
    UserFactory,
)
from tests.test_security import ALL_URLS, PUBLIC_URL_NAMES

ROLES = ("Owner", "Assistant", "Viewer")
WEBHOOKS = {"api:webhook_stripe", "api:webhook_shopify"}  # signed by the sender, no role

# The staff pages outside the admin and the API: (Owner, Assistant, Viewer) may open them.
PAGES = {
    "pages:today": (True, True, True),
    "pages:dashboard": (True, True, True),
    "pages:demo_load": (True, False, False),
    "pages:customer_detail": (True, True, True),
    "pages:customer_list": (True, True, True),
    "pages:customer_new": (True, True, False),
    "pages:customers_bulk": (True, True, False),
    "pages:customer_edit": (True, True, False),
    "pages:customer_sale_record": (True, True, False),
    "pages:customer_activity_log": (True, True, False),
    "pages:customer_followup_create": (True, True, False),
    "pages:followup_done": (True, True, False),
    "pages:followup_snooze": (True, True, False),
    "pages:customer_offer_record": (True, True, False),
    "pages:customer_feedback_add": (True, True, False),
    "pages:customer_feedback_link_create": (True, True, False),
    "pages:customer_segment_pin": (True, False, False),
    "pages:customer_segment_unpin": (True, False, False),
    "pages:feedback_answered": (True, True, False),
    "pages:segment_detail": (True, True, True),
    "pages:business_settings": (True, False, False),
    "pages:customer_data_export": (True, False, False),
    "pages:customer_erase": (True, False, False),
    "offers:offer_list": (True, True, True),
    "offers:offer_detail": (True, True, True),
    "offers:offer_create": (True, False, False),
    "offers:offer_edit": (True, False, False),
    "offers:segment_offer_present": (True, True, False),
    "offers:offer_email_send": (True, False, False),
    "offers:offer_email_test": (True, False, False),
    "offers:offer_recipients_csv": (True, False, False),
    "offers:offer_present_by_hand": (True, True, False),
    "segmentation:segment_list": (True, True, True),
    "segmentation:segment_members_export": (True, False, False),
    "segmentation:segmentation_run_start": (True, False, False),
    "segmentation:segmentation_run_status": (True, True, True),
    "api:docs": (True, True, True),
    # One's own two-step sign-in: every role.
    "accounts:two_step": (True, True, True),
    "accounts:two_step_start": (True, True, True),
    "accounts:two_step_confirm": (True, True, True),
    "accounts:recovery_codes_regenerate": (True, True, True),
    "accounts:two_step_turn_off": (True, True, True),
}

# What the Assistant and the Viewer may do, model by model (the Owner may do everything).
ASSISTANT = {
    "crm.customer": {"view", "add", "change"},
    "crm.purchase": {"view", "add", "change"},
    "crm.feedback": {"view", "add", "change"},
    "crm.tag": {"view", "add"},
    "crm.activity": {"view", "add"},
    "crm.followup": {"view", "add", "change"},
    "segmentation.segment": {"view"},
    "segmentation.membership": {"view"},
    "offers.offer": {"view"},
    "offers.offerresponse": {"view", "add", "change"},
}
VIEWER = {
    "crm.customer": {"view"},
    "crm.purchase": {"view"},
    "crm.feedback": {"view"},
    "crm.tag": {"view"},
    "crm.activity": {"view"},
    "crm.followup": {"view"},
    "segmentation.segment": {"view"},
    "segmentation.membership": {"view"},
    "segmentation.segmentationrun": {"view"},
    "segmentation.segmentmembershipchange": {"view"},
    "offers.offer": {"view"},
    "offers.offerresponse": {"view"},
}
API_MODELS = {
    "customer": "crm.customer",
    "purchase": "crm.purchase",
    "feedback": "crm.feedback",
    "segment": "segmentation.segment",
    "membership": "segmentation.membership",
    "prediction": "segmentation.customerprediction",
}
API_ACTIONS = {"GET": "view", "POST": "add"}


def _permission_set(spec: dict[str, set[str]]) -> set[str]:
    out = set()
    for model, actions in spec.items():
        app, name = model.split(".")
        out |= {f"{app}.{action}_{name}" for action in actions}
    return out


def _group_permissions(name: str) -> set[str]:
    return {
        f"{p.content_type.app_label}.{p.codename}"
        for p in Group.objects.get(name=name).permissions.select_related("content_type")
    }


def test_the_roles_hold_exactly_the_permissions_they_promise(db):
    assert _group_permissions("Assistant") == _permission_set(ASSISTANT)
    assert _group_permissions("Viewer") == _permission_set(VIEWER)
    owner = _group_permissions("Owner")
    for permission in (
        "crm.delete_customer",
        "crm.export_customer",
        "crm.view_customer_sensitive",
        "segmentation.run_segmentation",
        "django_celery_beat.change_periodictask",
        "api.add_apitoken",
        "auth.change_user",
        "crm.change_businesssettings",
    ):
        assert permission in owner


def test_every_page_of_the_urlconf_has_a_role_expectation():
    names = {name for name, _, _ in ALL_URLS}
    pages = {n for n in names if not n.startswith(("admin:", "api:")) and "." not in n}
    assert pages - PUBLIC_URL_NAMES == set(PAGES) - {"api:docs"}


def _sample_objects() -> None:
    """One object of every model the admin shows, so object URLs reach the permission check
    (the admin's history page answers a missing object with a redirect before checking)."""
    customer = CustomerFactory()
    PurchaseFactory(customer=customer)
    FeedbackFactory(customer=customer)
    TagFactory()
    run = SegmentationRunFactory()
    segment = SegmentFactory()
    SegmentMembershipChange.objects.create(customer=customer, run=run, to_segment=segment)
    offer = OfferFactory()
    OfferResponseFactory(customer=customer, offer=offer)
    Delivery.objects.create(offer=offer, customer=customer, segment=segment)
    api_services.api_token_create(user=UserFactory(), name="shop", scope="read")
    WebhookEvent.objects.create(source="stripe", event_id="evt_1")
    audit_record(actor=SYSTEM, action=AuditEntry.Action.VIEWED, obj=customer)
    interval = beat.IntervalSchedule.objects.create(every=1, period="days")
    beat.CrontabSchedule.objects.create()
    beat.SolarSchedule.objects.create(event="sunrise", latitude=0, longitude=0)
    beat.ClockedSchedule.objects.create(clocked_time=timezone.now())
    beat.PeriodicTask.objects.get_or_create(
        name="sample", defaults={"task": "sample", "interval": interval}
    )
    visit = {
        "ip_address": "127.0.0.1",
        "user_agent": "",
        "http_accept": "",
        "path_info": "",
        "attempt_time": timezone.now(),
    }
    AccessAttempt.objects.create(**visit, get_data="", post_data="", failures_since_start=1)
    AccessLog.objects.create(**visit)
    AccessFailureLog.objects.create(**visit)


def _admin_model(name: str, path: str):
    """The model of an admin URL, from its path /admin/<app>/<model>/..."""
    parts = path.strip("/").split("/")
    if len(parts) < 3:
        return None
    for model in admin.site._registry:
        if (model._meta.app_label, model._meta.model_name) == (parts[1], parts[2]):
            return model
    return None


def _concrete(name: str, path: str) -> str:
    """The sample path with the id of an existing object in place of the sample "1"."""
    model = _admin_model(name, path)
    if model is None or "/1/" not in path:
        return path
    obj = model._default_manager.order_by("pk").first()
    assert obj is not None, f"no sample {model._meta.label} for {path}"
    return path.replace("/1/", f"/{obj.pk}/", 1)


def _request(client, method: str, path: str) -> int:
    # Each request in a savepoint rolled back: a permitted POST (a delete) leaves the sample
    # objects for the next URL.
    with transaction.atomic():
        response = client.get(path) if method == "GET" else client.post(path)
        transaction.set_rollback(True)
    location = response.get("Location", "")
    assert not location.startswith(reverse("admin:login")), f"{method} {path} asked for a login"
    return response.status_code


def _forbidden(status: int) -> bool:
    return status == 403


def _expected(role_index: int, user, name: str, path: str, method: str, baseline: int) -> bool:
    """True when the role may open this URL (the superuser's answer bounds every role)."""
    if name in PAGES:
        return PAGES[name][role_index]
    if name.startswith("api:"):
        if name == "api:schema":
            return True
        model = API_MODELS[name.split(":")[1].split("-")[0]]
        app, model_name = model.split(".")
        return user.has_perm(f"{app}.{API_ACTIONS[method]}_{model_name}")
    if _forbidden(baseline):
        return False
    model = _admin_model(name, path)
    if model is None:  # the admin's own pages (index, logout, password, app list, ...)
        return True
    opts = model._meta

    def may(action: str) -> bool:
        return user.has_perm(f"{opts.app_label}.{action}_{opts.model_name}")

    view = name.rsplit("_", 1)[-1] if name.startswith("admin:") else ""
    if name.endswith(("_import", "_import_job", "_import_job_status", "_import_confirm")):
        return may("add") and may("change")
    if name.endswith("_recluster"):
        return user.has_perm("segmentation.run_segmentation")
    if name.endswith("_password_change"):
        return may("change")
    if view == "add":
        return may("add")
    if view == "delete":
        return may("delete")
    if method == "POST" and view == "change":
        return may("change")
    return may("view") or may("change")


ROLE_URLS = [
    (name, path)
    for name, path, _ in ALL_URLS
    if name not in PUBLIC_URL_NAMES
    and name not in WEBHOOKS
    and not name.startswith("django.")  # the admin's catch-all and /<id>/ redirects
    and name != "admin:logout"  # open to every login; a POST would end this test's session
]


@pytest.mark.parametrize("role", ROLES)
def test_each_role_opens_exactly_the_urls_it_should(client, db, role):
    _sample_objects()
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    user = UserFactory(username=role.lower(), is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    paths = [(name, _concrete(name, path)) for name, path in ROLE_URLS]

    client.force_login(root)
    baseline = {(p, m): _request(client, m, p) for _, p in paths for m in ("GET", "POST")}
    client.force_login(user)
    wrong = []
    for name, path in paths:
        for method in ("GET", "POST"):
            status = _request(client, method, path)
            want = _expected(ROLES.index(role), user, name, path, method, baseline[path, method])
            if _forbidden(status) == want or status >= 500:
                wrong.append(f"{method} {path} ({name}): {status}, expected allowed={want}")

    assert not wrong, "\n".join(wrong)


def test_superusers_are_refused_nothing_the_pages_offer(client, db):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    for name in PAGES:
        path = next(p for n, p, _ in ALL_URLS if n == name)
        for method in ("GET", "POST"):
            assert not _forbidden(_request(client, method, path)), f"{method} {path}"


def test_the_customer_page_shows_income_and_age_only_with_the_sensitive_permission(client, db):
    customer = CustomerFactory(annual_income=52000, age=41)
    url = reverse("pages:customer_detail", args=[customer.pk])
    for role, shown in (("Owner", True), ("Assistant", False), ("Viewer", False)):
        user = UserFactory(username=f"{role}-page", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)

        page = client.get(url).content.decode()

        assert ("<dt>Income</dt>" in page) is shown, role
        assert ("<dt>Age</dt>" in page) is shown, role


def test_the_customer_admin_leaves_out_income_and_birth_date_without_the_permission(client, db):
    customer = CustomerFactory(annual_income=52000)
    url = reverse("admin:crm_customer_change", args=[customer.pk])
    for role, shown in (("Owner", True), ("Assistant", False)):
        user = UserFactory(username=f"{role}-admin", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)

        form = client.get(url).context["adminform"].form

        assert ("annual_income" in form.fields) is shown, role
        assert ("birth_date" in form.fields) is shown, role


def test_admin_actions_need_their_permission(client, db):
    ann = CustomerFactory(name="Ann", annual_income=52000)
    changelist = reverse("admin:crm_customer_changelist")
    body = {"action": "export_selected_csv", ACTION_CHECKBOX_NAME: [ann.pk]}
    for role, exports in (("Owner", True), ("Assistant", False), ("Viewer", False)):
        user = UserFactory(username=f"{role}-action", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)

        response = client.post(changelist, body)

        assert (response.get("Content-Type", "").startswith("text/csv")) is exports, role
        actions = {
            a
            for a, _ in client.get(changelist)
            .context["cl"]
            .model_admin.get_action_choices(response.wsgi_request)
        }
        assert ("customers_pin" in actions) is (role == "Owner"), role


def test_an_assistant_may_tag_from_the_customer_list_but_not_export(client, db):
    assistant = UserFactory(username="asa", is_staff=True)
    assistant.groups.add(Group.objects.get(name="Assistant"))
    client.force_login(assistant)
    customer = CustomerFactory(annual_income=50000)
    url = reverse("pages:customers_bulk")

    exported = client.post(url, {"selected": [customer.pk], "action": "export"})
    tagged = client.post(url, {"selected": [customer.pk], "action": "tag", "tag_name": "vip"})
    edit = client.get(reverse("pages:customer_detail", args=[customer.pk]))

    assert exported.status_code == 403
    assert tagged.status_code == 302 and customer.tags.filter(name="vip").exists()
    assert 'name="annual_income"' not in edit.content.decode()
