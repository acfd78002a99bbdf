"""Segment pages (a segment's own page, which combines offers too, is in pages)."""

from django.urls import path

from segmentation import views

app_name = "segmentation"

urlpatterns = [
    path("segments/", views.segment_list, name="segment_list"),
    path(
        "segments/<int:pk>/members.csv",
        views.segment_members_export,
        name="segment_members_export",
    ),
    path(
        "segments/runs/<int:pk>/status/",
        views.segmentation_run_status,
        name="segmentation_run_status",
    ),
    path("segments/recluster/", views.segmentation_run_start, name="segmentation_run_start"),
]
