"""Staff pages of the CRM: Today (the home page), the dashboard, customers and offers."""

from django.urls import path

from crm import views

app_name = "crm"

urlpatterns = [
    path("", views.today, name="today"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("customers/<int:pk>/", views.customer_detail, name="customer_detail"),
    path(
        "customers/<int:pk>/offers/<int:offer_pk>/",
        views.customer_offer_record,
        name="customer_offer_record",
    ),
    path("customers/<int:pk>/feedback/", views.customer_feedback_add, name="customer_feedback_add"),
    path("customers/<int:pk>/pin/", views.customer_segment_pin, name="customer_segment_pin"),
    path("customers/<int:pk>/unpin/", views.customer_segment_unpin, name="customer_segment_unpin"),
    path(
        "customers/<int:pk>/feedback/<int:feedback_pk>/answered/",
        views.feedback_answered,
        name="feedback_answered",
    ),
    path("offers/", views.offer_list, name="offer_list"),
    path("offers/new/", views.offer_create, name="offer_create"),
    path("offers/<int:pk>/", views.offer_detail, name="offer_detail"),
    path("offers/<int:pk>/edit/", views.offer_edit, name="offer_edit"),
]
