"""Public pages, reachable without logging in: the feedback link."""

from django.urls import path

from crm import public_views

app_name = "feedback"

urlpatterns = [
    path("thanks/", public_views.feedback_thanks, name="thanks"),
    path("<str:token>/", public_views.feedback_submit, name="submit"),
]
