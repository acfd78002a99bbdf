"""Public pages, reachable without logging in: the feedback link, long and short."""

from django.urls import path

from crm import public_views

app_name = "feedback"

urlpatterns = [
    path("thanks/", public_views.feedback_thanks, name="thanks"),
    path("<str:token>/", public_views.feedback_submit, name="submit"),
]

# Mounted at /f/ by config.urls: the short link of a text message, no trailing slash to type.
short_urlpatterns = [
    path("<str:code>", public_views.feedback_short_submit, name="feedback_short"),
]
