"""Segment pages."""

from django.urls import path

from segmentation import views

app_name = "segmentation"

urlpatterns = [
    path("segments/", views.segment_list, name="segment_list"),
    path("segments/<int:pk>/", views.segment_detail, name="segment_detail"),
    path(
        "segments/<int:pk>/members.csv",
        views.segment_members_export,
        name="segment_members_export",
    ),
    path("segments/<int:pk>/present/", views.segment_offer_present, name="segment_offer_present"),
    path("segments/recluster/", views.segmentation_run_start, name="segmentation_run_start"),
]
