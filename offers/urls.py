"""Offer pages."""

from django.urls import path

from offers import views

app_name = "offers"

urlpatterns = [
    path("offers/", views.offer_list, name="offer_list"),
    path("offers/new/", views.offer_create, name="offer_create"),
    path("offers/<int:pk>/", views.offer_detail, name="offer_detail"),
    path("offers/<int:pk>/edit/", views.offer_edit, name="offer_edit"),
    path("segments/<int:pk>/present/", views.segment_offer_present, name="segment_offer_present"),
]
