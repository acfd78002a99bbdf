"""/api/v1/: the REST API, its schema and documentation, and the shop webhooks."""

from django.contrib.auth.decorators import login_not_required
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

app_name = "api"

urlpatterns = [
    *router.urls,
    # Token clients read the schema too; DRF's permission classes guard it.
    path("schema/", login_not_required(SpectacularAPIView.as_view()), name="schema"),
    # A staff page: the staff-login middleware guards it like every other page.
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("webhooks/stripe/", webhooks.stripe_webhook, name="webhook_stripe"),
    path("webhooks/shopify/", webhooks.shopify_webhook, name="webhook_shopify"),
]
