"""Customer search: folded search text, kept in step by every writer, found by any part."""

import io

import pytest
from django.core.management import call_command
from django.db import connection

from crm import search_index
from crm.importers.customers import customers_import
from crm.models import Customer
from crm.search import customer_search_text, search_needle, text_folded
from crm.search_index import SEARCH_TABLE, search_index_ensure
from crm.selectors import customer_search
from crm.services import customer_create, customer_update, customers_search_text_refresh
from tests.factories import CustomerFactory


def test_folding_lowers_and_strips_accents():
    assert text_folded("  Zoë   ÓLAFSDÓTTIR ") == "zoe olafsdottir"
    assert customer_search_text(name="Renée", email="R@Ex.com", phone="+44 7700 900123") == (
        "renee|r@ex.com|447700900123"
    )


def test_a_phone_like_term_searches_its_last_digits():
    assert search_needle("7700 900123") == "7700900123"
    assert search_needle("+44 (0)7700-900123") == "7700900123"
    assert search_needle("+44 20") == "4420"
    assert search_needle("Nina") == "nina"


def _found(term: str) -> set[str]:
    return set(
        customer_search(queryset=Customer.objects.all(), term=term).values_list("name", flat=True)
    )


@pytest.mark.django_db
def test_search_finds_any_part_of_a_name_or_email_in_any_case_and_accent():
    CustomerFactory(name="Nina Newcomer", email="nina@example.com", phone="")
    CustomerFactory(name="Zoë Ólafsdóttir", email="zoe@fjord.is", phone="")
    CustomerFactory(name="Bob Stone", email="bob@stone.example", phone="")

    assert _found("Newcomer") == {"Nina Newcomer"}
    assert _found("newc") == {"Nina Newcomer"}
    assert _found("OLAFS") == {"Zoë Ólafsdóttir"}
    assert _found("zoe ó") == {"Zoë Ólafsdóttir"}
    assert _found("FJORD.IS") == {"Zoë Ólafsdóttir"}
    assert _found("example") == {"Nina Newcomer", "Bob Stone"}
    assert _found("nobody") == set()


@pytest.mark.django_db
def test_search_finds_a_phone_with_or_without_country_code_and_spaces():
    CustomerFactory(name="Nina Newcomer", phone="+44 7700 900123")
    CustomerFactory(name="Otto National", phone="07700 900456")
    CustomerFactory(name="Other", phone="+44 20 7946 0000")

    assert _found("7700 900123") == {"Nina Newcomer"}
    assert _found("+447700900123") == {"Nina Newcomer"}
    assert _found("07700900123") == {"Nina Newcomer"}
    assert _found("+44 7700 900456") == {"Otto National"}
    assert _found("7700900") == {"Nina Newcomer", "Otto National"}


@pytest.mark.django_db
def test_search_still_finds_an_external_id_exactly():
    CustomerFactory(name="Shop one", external_source="shop", external_id="A-17")
    assert _found("A-17") == {"Shop one"}


@pytest.mark.django_db
def test_services_keep_the_search_text_in_step():
    customer = customer_create(name="Ann Example", email="ann@example.com", phone="+1 555 0100")
    assert customer.search_text == "ann example|ann@example.com|15550100"

    customer_update(customer=customer, name="Ann Élan")
    customer.refresh_from_db()
    assert customer.search_text == "ann elan|ann@example.com|15550100"

    customer_update(customer=customer, city="Paris")  # not searched: left alone
    customer.refresh_from_db()
    assert customer.search_text.startswith("ann elan|")


@pytest.mark.django_db
def test_the_customer_importer_keeps_the_search_text_in_step():
    existing = CustomerFactory(name="Old Name", email="old@example.com", phone="")
    data = (
        "name,email,phone\nNew Name,old@example.com,\n"
        "Cléo Dupont,cleo@example.com,+33 6 12 34 56 78\n"
    )

    customers_import(source=io.BytesIO(data.encode()))

    existing.refresh_from_db()
    assert existing.search_text == "new name|old@example.com|"
    assert Customer.objects.get(email="cleo@example.com").search_text == (
        "cleo dupont|cleo@example.com|33612345678"
    )


@pytest.mark.django_db
def test_refresh_recomputes_rows_written_behind_the_services_back():
    customer = CustomerFactory(name="Raw Row", email="raw@example.com", phone="")
    Customer.objects.filter(pk=customer.pk).update(search_text="")

    assert customers_search_text_refresh() == 1
    customer.refresh_from_db()
    assert customer.search_text == "raw row|raw@example.com|"
    assert customers_search_text_refresh() == 0


@pytest.mark.django_db
def test_postgresql_answers_the_search_from_the_trigram_index():
    if connection.vendor != "postgresql":
        pytest.skip("the trigram index exists on PostgreSQL only")
    CustomerFactory.create_batch(3)
    with connection.cursor() as cursor:
        # On three rows every plan costs the same: rule out the table scan and the walk of
        # the ordering index, so what is left shows whether the trigram index can serve.
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("SET enable_indexscan = off")
        query = customer_search(queryset=Customer.objects.all(), term="newcomer")
        plan = query.explain()
        cursor.execute("RESET enable_seqscan")
        cursor.execute("RESET enable_indexscan")
    assert "customer_search_trgm_idx" in plan


def _sqlite_only() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("the FTS5 search table exists on SQLite only")


@pytest.mark.django_db
def test_sqlite_answers_the_search_from_its_trigram_table():
    _sqlite_only()
    CustomerFactory.create_batch(3)

    plan = customer_search(queryset=Customer.objects.all(), term="newcomer").explain()

    assert "VIRTUAL TABLE INDEX" in plan and SEARCH_TABLE in plan
    # Too short for a trigram: still answered, by reading the column.
    assert (
        "VIRTUAL TABLE" not in customer_search(queryset=Customer.objects.all(), term="ne").explain()
    )


@pytest.mark.django_db
def test_sqlite_search_table_follows_every_writer():
    _sqlite_only()
    nina = customer_create(name="Nina Newcomer", email="nina@example.com", phone="")
    customers_import(source=io.BytesIO(b"name,email\nCleo Dupont,cleo@example.com\n"))
    assert _found("newcomer") == {"Nina Newcomer"}
    assert _found("dupont") == {"Cleo Dupont"}

    customer_update(customer=nina, name="Nina Oldtimer")
    customers_import(source=io.BytesIO(b"name,email\nCleo Durand,cleo@example.com\n"))
    Customer.objects.filter(email="cleo@example.com").update(search_text="raw|written|")
    assert _found("newcomer") == set() and _found("oldtimer") == {"Nina Oldtimer"}
    assert _found("dupont") == set() and _found("written") == {"Cleo Durand"}

    nina.delete()
    assert _found("oldtimer") == set()
    # Statements that do not set search_text leave the index alone, and it still answers.
    Customer.objects.update(total_spent=5)
    assert _found("written") == {"Cleo Durand"}


@pytest.mark.django_db
def test_sqlite_search_table_is_rebuilt_after_a_migrate_that_lost_its_triggers():
    _sqlite_only()
    CustomerFactory(name="Before Rebuild", email="", phone="")
    with connection.cursor() as cursor:
        # What Django's rebuild of the customer table for an altered column leaves behind.
        for trigger in ("crm_customer_search_ai", "crm_customer_search_au"):
            cursor.execute(f"DROP TRIGGER {trigger}")
    CustomerFactory(name="Written Meanwhile", email="", phone="")
    assert _found("meanwhile") == set()

    call_command("migrate", verbosity=0)

    assert _found("meanwhile") == {"Written Meanwhile"}
    assert _found("rebuild") == {"Before Rebuild"}
    assert search_index_ensure() is False  # in place: nothing to do


@pytest.mark.django_db
def test_a_whole_number_finds_the_phone_ending_with_it_a_fragment_any_containing_it():
    CustomerFactory(name="Ends With", phone="+44 20 7946 0018")
    CustomerFactory(name="Contains", phone="+44 20 7946 0018 9")  # an extension after it

    assert _found("020 7946 0018") == {"Ends With"}
    assert _found("7946 001") == {"Ends With", "Contains"}


@pytest.mark.django_db
def test_a_phone_number_is_looked_up_from_the_index_on_the_last_digits():
    CustomerFactory.create_batch(3)
    CustomerFactory(phone="020 7946 0018")
    query = customer_search(queryset=Customer.objects.all(), term="+44 20 7946 0018")

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
        plan = query.explain()

    assert "customer_phone_tail_idx" in plan


def _plans(*queries) -> list[str]:
    """The queries' plans. On four rows every plan costs the same: PostgreSQL's table scan
    and walk of the ordering index are ruled out, so what is left shows whether the trigram
    index can serve."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET enable_seqscan = off")
            cursor.execute("SET enable_indexscan = off")
        plans = [query.explain() for query in queries]
        if connection.vendor == "postgresql":
            cursor.execute("RESET enable_seqscan")
            cursor.execute("RESET enable_indexscan")
    return plans


@pytest.mark.django_db
def test_a_very_common_term_is_checked_along_the_lists_order_with_the_same_answer(monkeypatch):
    for name in ("Ann Becker", "Bo Becker", "Cy Becker", "Di Stone"):
        CustomerFactory(name=name, email="", phone="")
    listed = Customer.objects.order_by("-total_spent", "-id")
    rare = customer_search(queryset=listed, term="becker")
    monkeypatch.setattr(search_index, "DENSE_MATCHES", 2)  # now three are many
    common = customer_search(queryset=listed, term="becker")
    fenced = customer_search(queryset=listed, term="becker", walk_when_common=False)

    assert list(common) == list(rare) == list(fenced) and len(rare) == 3
    index = SEARCH_TABLE if connection.vendor == "sqlite" else "customer_search_trgm_idx"
    rare_plan, fenced_plan, common_plan = _plans(rare, fenced, common)
    assert index in rare_plan and index in fenced_plan
    assert index not in common_plan
