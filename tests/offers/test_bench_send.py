"""The send benchmark's own parts: its refusal of real data, its SMTP server and its floor."""

import pytest
from django.core.management import CommandError, call_command

from offers.benchmark.send import floor_messages, floor_send
from offers.benchmark.smtp_sink import SmtpSink
from tests.factories import CustomerFactory


@pytest.mark.django_db
def test_the_bench_refuses_a_database_holding_customers_it_did_not_create():
    CustomerFactory()
    with pytest.raises(CommandError, match="Refused"):
        call_command("bench_send", "--customers", "10")


def test_the_floor_delivers_every_message_to_the_counting_server():
    messages = floor_messages(count=25, size=800)
    assert len({to for to, _ in messages}) == 25
    assert all(700 < len(raw) <= 800 for _, raw in messages)

    with SmtpSink() as sink:
        assert floor_send(port=sink.port, messages=messages) > 0
        sink.wait_for(25)
        received, size = sink.received()

    assert received == 25
    assert size >= sum(len(raw) for _, raw in messages) - 25 * 2
