"""A staff user's own login: the Two-step sign-in page and its forms."""

from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("two-step/", views.two_step, name="two_step"),
    path("two-step/start/", views.two_step_start, name="two_step_start"),
    path("two-step/confirm/", views.two_step_confirm, name="two_step_confirm"),
    path(
        "two-step/recovery-codes/",
        views.recovery_codes_regenerate,
        name="recovery_codes_regenerate",
    ),
    path("two-step/turn-off/", views.two_step_turn_off, name="two_step_turn_off"),
]
