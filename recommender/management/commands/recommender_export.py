"""Write interactions as CSV in the import format, in time order."""

import csv

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from recommender.models import Interaction
from recommender.tracking import csvformat
from recommender.tracking.importer import export_rows


def _when(text):
    """A ``--since``/``--until`` bound: a date or date-time read as the import reads a
    timestamp (naive: in ``TIME_ZONE``)."""
    try:
        return csvformat.parse_timestamp(text, timezone.get_default_timezone())
    except ValueError as exc:
        raise CommandError(f"--since/--until: {exc}") from None


class Command(BaseCommand):
    help = ("Export the interactions of known users as CSV (user_id,item_id,event,value,timestamp,ref,"
            "context; timestamps in UTC), streaming from the database: importing the file into an empty "
            "table gives back every row. Anonymous sessions are not exported.")

    def add_arguments(self, parser):
        parser.add_argument("-o", "--output", default="-", help="file to write (default: stdout)")
        parser.add_argument("--event", action="append", help="only this event type (repeatable)")
        parser.add_argument("--since", help="only from this date or date-time (ISO 8601; naive: TIME_ZONE)")
        parser.add_argument("--until", help="only before this date or date-time (ISO 8601; naive: TIME_ZONE)")
        parser.add_argument("--item-field", help="item field written as item_id")
        parser.add_argument("--user-field", help="user field written as user_id")

    def handle(self, output, event=None, since=None, until=None, item_field=None, user_field=None, **opts):
        qs = Interaction.objects.all()
        if event:
            qs = qs.filter(event__in=event)
        if since:
            qs = qs.filter(timestamp__gte=_when(since))
        if until:
            qs = qs.filter(timestamp__lt=_when(until))
        out = self.stdout if output == "-" else open(output, "w", newline="", encoding="utf-8")
        count = 0
        try:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(csvformat.EXPORT_HEADER)
            for row in export_rows(qs, item_field=item_field, user_field=user_field):
                writer.writerow(row)
                count += 1
        finally:
            if out is not self.stdout:
                out.close()
        if output != "-":
            self.stdout.write(self.style.SUCCESS(f"Wrote {count} interactions to {output}."))
