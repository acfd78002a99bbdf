"""Read bounce reports from a Maildir, an mbox file or standard input, and mark the offer
e-mails they are about bounced."""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from offers.bounces import BOUNCED, bounces_process, mailbox_messages


class Command(BaseCommand):
    help = (
        "Read delivery status notifications (bounces) and mark the offer e-mails they report "
        "as permanently undeliverable bounced. PATH: a Maildir folder or an mbox file; '-' "
        "reads one message from standard input."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="A Maildir folder, an mbox file, or - for stdin.")

    def handle(self, *args, path: str, **options):
        if path == "-":
            messages = [sys.stdin.buffer.read()]
        else:
            source = Path(path)
            if not source.exists():
                raise CommandError(f"{path}: no such Maildir folder or mbox file.")
            if source.is_dir() and not (source / "cur").is_dir():
                raise CommandError(f"{path}: a folder, but not a Maildir (no cur/ inside).")
            messages = mailbox_messages(source)
        counts = bounces_process(messages)
        total = sum(counts.values())
        self.stdout.write(f"Read {total:,} message{'' if total == 1 else 's'}.")
        for case, n in sorted(counts.items(), key=lambda item: item[0] != BOUNCED):
            self.stdout.write(f"  {case}: {n:,}")
