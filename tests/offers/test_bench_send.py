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


@pytest.mark.django_db(transaction=True)
def test_the_whole_bench_sends_every_message_of_a_small_segment_and_prints_its_figures(
    settings, capsys
):
    # The product's send runs in this process (a child would not see the test database),
    # through the same send_here, to the bench's own SMTP server.
    from unittest import mock

    from offers.benchmark import send

    def send_in_this_process(*, offer_id, segment_id, port, budget, log):
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.DEFAULT_FROM_EMAIL = send.SENDER
        settings.EMAIL_SEND_RATE = float(send.RATE)
        result = send.send_here(offer_id=offer_id, segment_id=segment_id)
        return {**result, "stopped": False, "queued": result["sent"]}

    with mock.patch.object(send, "send_in_child", send_in_this_process):
        call_command("bench_send", "--customers", "200")

    out = capsys.readouterr().out
    assert "200 eligible customers" in out
    assert "then" in out and "msg/s" in out
    assert "200 received" in out
    assert "ratio            product / floor" in out
