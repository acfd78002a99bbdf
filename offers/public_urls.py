"""Public pages behind offer e-mails: /u/<token>/ unsubscribes, /o/<token>/ shows the offer."""

from django.urls import path

from offers import public_views

app_name = "offer_public"

urlpatterns = [
    path("u/<str:token>/", public_views.unsubscribe, name="unsubscribe"),
    path("o/<str:token>/", public_views.offer_page, name="offer"),
]
