"""/api/v1/: the REST API, its schema and documentation, and the shop webhooks."""

from django.contrib.admin.views.decorators import staff_member_required
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from api import views, webhooks

router = SimpleRouter()
router.register("customers", views.CustomerViewSet, basename="customer")
router.register("purchases", views.PurchaseViewSet, basename="purchase")
router.register("feedback", views.FeedbackViewSet, basename="feedback")
router.register("segments", views.SegmentViewSet, basename="segment")
router.register("memberships", views.MembershipViewSet, basename="membership")
router.register("predictions", views.PredictionViewSet, basename="prediction")

app_name = "api"

urlpatterns = [
    *router.urls,
    # For token clients and staff (SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"]).
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # DRF views skip the staff-login middleware: the documentation page asks for staff here.
    path(
        "docs/",
        staff_member_required(SpectacularSwaggerView.as_view(url_name="api:schema")),
        name="docs",
    ),
    path("webhooks/stripe/", webhooks.stripe_webhook, name="webhook_stripe"),
    path("webhooks/shopify/", webhooks.shopify_webhook, name="webhook_shopify"),
]
