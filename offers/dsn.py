"""Delivery status notifications (RFC 3464): what a bounce report says, read from the message.

Pure: the standard library's e-mail parser and nothing of Django.
"""

import re
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32

_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_ADDRESS = re.compile(r"<?([^<>\s;]+@[^<>\s;]+)>?")
# Headers that name the address a report was returned to (the original's envelope sender).
_RETURNED_TO = ("To", "Delivered-To", "X-Original-To", "Envelope-To")


@dataclass(frozen=True)
class RecipientStatus:
    """One recipient's line of a report: its address, action, status code and the server's
    words."""

    address: str
    action: str  # failed, delayed, delivered, relayed or expanded
    status: str  # e.g. 5.1.1
    diagnostic: str = ""

    @property
    def hard(self) -> bool:
        """A permanent failure (5.x.x): the address will not take mail, now or later."""
        return self.action == "failed" and self.status.startswith("5.")


@dataclass(frozen=True)
class DeliveryReport:
    """What a bounce report tells: the recipients' outcomes, the original's Message-ID(s) and
    the addresses the report was returned to (a per-message return address among them)."""

    recipients: list[RecipientStatus]
    message_ids: list[str] = field(default_factory=list)
    returned_to: list[str] = field(default_factory=list)

    @property
    def hard(self) -> list[RecipientStatus]:
        return [r for r in self.recipients if r.hard]


def _address(value: str) -> str:
    """The address of a typed field ("rfc822; ada@example.com") or a header."""
    value = value.partition(";")[2] if ";" in value.split("@")[0] else value
    match = _ADDRESS.search(value.strip())
    return match.group(1).strip().lower() if match else ""


def _unfold(value: str) -> str:
    return " ".join(str(value).split())


def _original_headers(part: Message) -> Message | None:
    """The returned message's headers: text/rfc822-headers or message/rfc822."""
    if part.get_content_type() == "text/rfc822-headers":
        payload = part.get_payload(decode=True) or b""
        return HeaderParser().parsestr(payload.decode("utf-8", "replace"))
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        return inner[0] if isinstance(inner, list) and inner else None
    return None


def delivery_report(message: Message) -> DeliveryReport | None:
    """The report a message carries, or None when it is not a delivery status notification
    (multipart/report with a message/delivery-status part)."""
    if message.get_content_type() != "multipart/report":
        return None
    recipients: list[RecipientStatus] = []
    message_ids: list[str] = []
    returned_to = [_address(str(message[h])) for h in _RETURNED_TO if message[h]]
    found_status = False
    for part in message.get_payload():
        if not isinstance(part, Message):
            continue
        if part.get_content_type() == "message/delivery-status":
            found_status = True
            blocks = part.get_payload()
            for block in blocks if isinstance(blocks, list) else []:
                if not block["Final-Recipient"] and not block["Original-Recipient"]:
                    continue  # the per-message block (Reporting-MTA, Arrival-Date, ...)
                recipients.append(
                    RecipientStatus(
                        address=_address(
                            str(block["Final-Recipient"] or block["Original-Recipient"])
                        ),
                        action=_unfold(block["Action"] or "").lower(),
                        status=_unfold(block["Status"] or "").split(" ")[0],
                        diagnostic=_unfold(block["Diagnostic-Code"] or ""),
                    )
                )
        elif (headers := _original_headers(part)) is not None:
            message_ids += _MESSAGE_ID.findall(str(headers["Message-ID"] or ""))
            if headers["Return-Path"]:
                returned_to.append(_address(str(headers["Return-Path"])))
    if not found_status:
        return None
    return DeliveryReport(
        recipients=recipients,
        message_ids=message_ids,
        returned_to=list(dict.fromkeys(a for a in returned_to if a)),
    )


def delivery_report_parse(raw: bytes) -> DeliveryReport | None:
    """delivery_report of a raw message (bytes as stored in a Maildir or mbox)."""
    return delivery_report(message_from_bytes(raw, policy=compat32))
