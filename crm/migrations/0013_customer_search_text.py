# The folded search column of customers, filled for the customers already there.

from django.db import migrations, models

from crm.search import customer_search_text

_BATCH = 2000


def search_text_fill(apps, schema_editor):
    Customer = apps.get_model("crm", "Customer")
    rows = Customer.objects.order_by("pk").only("name", "email", "phone")
    batch = []
    for customer in rows.iterator(chunk_size=_BATCH):
        customer.search_text = customer_search_text(
            name=customer.name, email=customer.email, phone=customer.phone
        )
        batch.append(customer)
        if len(batch) >= _BATCH:
            Customer.objects.bulk_update(batch, ["search_text"])
            batch.clear()
    if batch:
        Customer.objects.bulk_update(batch, ["search_text"])


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0012_offers_moved_to_offers_app"),
    ]

    operations = [
        migrations.AddField(
            model_name="customer",
            name="search_text",
            field=models.TextField(blank=True, default="", editable=False),
        ),
        migrations.RunPython(search_text_fill, migrations.RunPython.noop, elidable=True),
    ]
