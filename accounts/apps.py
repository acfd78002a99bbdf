from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    default = True
    name = "accounts"
    verbose_name = "Staff accounts"


class TwoStepAdminConfig(admin_apps.AdminConfig):
    """Django's admin with a login that asks for the second factor (accounts.sites)."""

    default = False
    default_site = "accounts.sites.TwoStepAdminSite"
