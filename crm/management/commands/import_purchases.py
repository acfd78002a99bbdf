"""Import purchases from a CSV file (see README, "Importing and exporting")."""

from crm.importers import PRESETS, purchases_import
from crm.management.commands.import_customers import ImportCommand


class Command(ImportCommand):
    help = (
        "Create or update purchases from a CSV file. Lines sharing an order id are grouped "
        "into one order; cancellations and lines without a customer are skipped and counted."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--preset",
            choices=sorted(PRESETS),
            default="",
            help="A named column mapping: "
            + "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values()),
        )
        parser.add_argument(
            "--create-customers",
            action="store_true",
            help="Create the customers the file names that do not exist yet.",
        )
        parser.add_argument(
            "--currency",
            default="",
            help="Currency of rows without one (default: the business's, from Settings).",
        )
        parser.add_argument(
            "--cancel-prefix",
            default=None,
            help="Order ids starting with this are cancellations and skipped (uci: 'C').",
        )
        parser.add_argument(
            "--date-format",
            default="",
            help="strptime format of purchased_at when it is not ISO (e.g. '%%d/%%m/%%Y %%H:%%M'); "
            "with --preset paypal, of its Date column (default '%%m/%%d/%%Y').",
        )

    def handle(self, *args, **options):
        self.run_import(
            options,
            purchases_import,
            preset=options["preset"],
            create_customers=options["create_customers"],
            external_source=options["source"],
            currency=options["currency"],
            cancel_prefix=options["cancel_prefix"],
            date_format=options["date_format"],
        )
