"""Create an API token for a user and print it (the only time it is shown)."""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from api import services
from api.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token: api_token_create --user U --scope read_write --name N"

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="Username the token acts as.")
        parser.add_argument("--scope", choices=ApiToken.Scope.values, default=ApiToken.Scope.READ)
        parser.add_argument("--name", required=True, help="What uses it, e.g. 'web shop'.")

    def handle(self, *args, user, scope, name, **options):
        account = get_user_model().objects.filter(username=user).first()
        if account is None:
            raise CommandError(f"No user {user!r}.")
        try:
            api_token, token = services.api_token_create(user=account, name=name, scope=scope)
        except ValidationError as e:
            raise CommandError("; ".join(e.messages)) from None
        self.stderr.write(f"Token {api_token} ({scope}) for {user}; it is shown only now:")
        self.stdout.write(token)
