# Offer and OfferResponse moved to the offers app (offers.0001 takes them over). Only
# Django's picture of the models changes here: the tables stay, with every row.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("crm", "0011_customer_segment_moved_to_membership"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="OfferResponse"),
                migrations.DeleteModel(name="Offer"),
            ],
            database_operations=[],
        ),
    ]
