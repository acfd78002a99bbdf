"""URL configuration."""

from django.contrib import admin
from django.urls import include, path

from config.health import healthz
from crm.public_urls import short_urlpatterns

admin.site.site_header = "Customer CRM"
admin.site.site_title = "Customer CRM"
admin.site.index_title = "Customers, segments and offers"
admin.site.site_url = "/"
# The customer list has many columns; the app list is one click away on the admin home.
admin.site.enable_nav_sidebar = False

# A failing disk or database shows a maintenance page (503), not a crash.
handler500 = "config.errors.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    # For a monitor: no login, no data (config.health).
    path("healthz", healthz, name="healthz"),
    path("api/v1/", include("api.urls")),
    # A staff user's own login settings: two-step sign-in.
    path("account/", include("accounts.urls")),
    # The public, unauthenticated page behind the feedback links sent to customers.
    path("feedback/", include("crm.public_urls")),
    # The same page behind the short link sent in a text message: /f/<12 characters>.
    path("f/", include(short_urlpatterns)),
    # The public pages behind offer e-mails: one-click unsubscribe and the personal offer link.
    path("", include("offers.public_urls")),
    path("", include("pages.urls")),
    path("", include("offers.urls")),
    path("", include("segmentation.urls")),
]
