"""django-otp's own device pages leave the admin: they show each user's secret key. A user
manages their own app on the Two-step sign-in page; `manage.py two_step_reset` helps one who
lost their phone and their recovery codes."""

from django.contrib import admin
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

for model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
