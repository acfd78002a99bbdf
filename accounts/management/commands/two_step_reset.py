"""Turn off two-step sign-in for a user who lost both their phone and their recovery codes."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.services import two_step_reset


class Command(BaseCommand):
    help = (
        "Remove a user's authenticator app and recovery codes: their next login asks for the "
        "password only (an owner is then asked to set up a new app when that is required)."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username: str, **options):
        user = get_user_model()._default_manager.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        removed = two_step_reset(user=user)
        self.stdout.write(
            f"Two-step sign-in of {username} turned off ({removed} device(s) removed)."
        )
