"""Offer pages."""

from django.urls import path

from offers import views

app_name = "offers"

urlpatterns = [
    path("offers/", views.offer_list, name="offer_list"),
    path("offers/new/", views.offer_create, name="offer_create"),
    path("offers/<int:pk>/", views.offer_detail, name="offer_detail"),
    path("offers/<int:pk>/edit/", views.offer_edit, name="offer_edit"),
    path("offers/<int:pk>/email/test/", views.offer_email_test, name="offer_email_test"),
    path("offers/<int:pk>/send/<int:segment_pk>/", views.offer_email_send, name="offer_email_send"),
    path(
        "offers/<int:pk>/send/<int:segment_pk>/recipients.csv",
        views.offer_recipients_csv,
        name="offer_recipients_csv",
    ),
    path(
        "offers/<int:pk>/present/<int:segment_pk>/",
        views.offer_present_by_hand,
        name="offer_present_by_hand",
    ),
    path("segments/<int:pk>/present/", views.segment_offer_present, name="segment_offer_present"),
]
