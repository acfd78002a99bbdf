"""Staff pages that combine every app: Today (the home page), the dashboard, a customer and
a segment."""

from django.urls import path

from pages import views

app_name = "pages"

urlpatterns = [
    path("", views.today, name="today"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("demo/", views.demo_load, name="demo_load"),
    path("customers/", views.customer_list, name="customer_list"),
    path("customers/new/", views.customer_new, name="customer_new"),
    path("customers/bulk/", views.customers_bulk, name="customers_bulk"),
    path("customers/<int:pk>/", views.customer_detail, name="customer_detail"),
    path("customers/<int:pk>/edit/", views.customer_edit, name="customer_edit"),
    path("customers/<int:pk>/sales/", views.customer_sale_record, name="customer_sale_record"),
    path(
        "customers/<int:pk>/activities/",
        views.customer_activity_log,
        name="customer_activity_log",
    ),
    path(
        "customers/<int:pk>/follow-ups/",
        views.customer_followup_create,
        name="customer_followup_create",
    ),
    path(
        "customers/<int:pk>/follow-ups/<int:follow_up_pk>/done/",
        views.followup_done,
        name="followup_done",
    ),
    path(
        "customers/<int:pk>/follow-ups/<int:follow_up_pk>/snooze/",
        views.followup_snooze_view,
        name="followup_snooze",
    ),
    path(
        "customers/<int:pk>/offers/<int:offer_pk>/",
        views.customer_offer_record,
        name="customer_offer_record",
    ),
    path("customers/<int:pk>/feedback/", views.customer_feedback_add, name="customer_feedback_add"),
    path(
        "customers/<int:pk>/feedback-link/",
        views.customer_feedback_link_create,
        name="customer_feedback_link_create",
    ),
    path("customers/<int:pk>/pin/", views.customer_segment_pin, name="customer_segment_pin"),
    path("customers/<int:pk>/unpin/", views.customer_segment_unpin, name="customer_segment_unpin"),
    path(
        "customers/<int:pk>/feedback/<int:feedback_pk>/answered/",
        views.feedback_answered,
        name="feedback_answered",
    ),
    path("customers/<int:pk>/data/", views.customer_data_export, name="customer_data_export"),
    path("customers/<int:pk>/erase/", views.customer_erase, name="customer_erase"),
    path("segments/<int:pk>/", views.segment_detail, name="segment_detail"),
    path("settings/", views.business_settings, name="business_settings"),
]
