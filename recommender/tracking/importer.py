"""Bulk CSV import and export of interactions, in the format of :mod:`recommender.tracking.csvformat`.

Both directions stream: the reader yields one row at a time, rows are inserted
in batches inside one transaction, and export walks the table with a
server-side cursor. Importing the same file twice adds nothing: every imported
row carries a key derived from its content.

The optional ``ref`` column (an order or invoice number, a line id) is stored and is part
of that key: two rows that are otherwise identical but carry different refs (the same
product bought in the same quantity in the same minute on two orders) are two
interactions. Rows with an empty ref have the key they had without the column. The
optional ``context`` column is stored, not part of the key. Export writes both, so
exporting and importing into an empty table gives back every row.
"""

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from recommender.conf import rec_settings
from recommender.models import Interaction
from recommender.tracking import csvformat

MAX_REPORTED_ERRORS = 50
_LOOKUP_CACHE_LIMIT = 500_000


class ImportFailed(Exception):
    """The file had bad rows; nothing was imported. ``errors`` lists ``(line, message)``."""

    def __init__(self, errors, truncated=False):
        self.errors = errors
        self.truncated = truncated
        lines = [f"line {line}: {message}" for line, message in errors]
        if truncated:
            lines.append(f"(stopped after {len(errors)} errors)")
        super().__init__("\n".join(lines))


@dataclass
class ImportResult:
    rows: int = 0
    created: int = 0
    skipped: int = 0  # already imported (same content), in the database or earlier in the file
    errors: list = field(default_factory=list)


def open_csv(path):
    """Open a CSV file (``.gz``: decompressed) as bytes, for :func:`read_csv`."""
    return csvformat.open_binary(path)


#: The name ``bench/bench_import.py`` uses.
open_text = open_csv


def read_csv(binary):
    """Yield ``(line_no, user_id, item_id, event, value, timestamp, ref, context)`` from a CSV file
    opened with :func:`open_csv`.

    ``ref`` and ``context`` are ``""`` when the file has no such column. A row that cannot
    be read comes with ``event=None`` and the message in place of the timestamp; a file that
    stops being readable (truncated gzip, NUL byte, unclosed quote) ends with such a row.
    """
    rows = csvformat.records(binary)
    try:
        first = next(rows, None)
        if first is None:
            raise ImportFailed([(1, f"the file is empty; expected the header {','.join(csvformat.HEADER)} "
                                    f"(and optionally ref, context)")])
        try:
            names = csvformat.parse_header(first[1])
        except ValueError as exc:
            raise ImportFailed([(first[0], str(exc))]) from None
        columns = len(names)
        ref_at = names.index("ref") if "ref" in names else None
        context_at = names.index("context") if "context" in names else None
        for line, row in rows:
            if len(row) != columns:
                yield line, None, None, None, None, f"expected {columns} columns, found {len(row)}", "", ""
                continue
            yield (line, *row[:5], row[ref_at] if ref_at is not None else "",
                   row[context_at] if context_at is not None else "")
    except csvformat.CSVFormatError as exc:
        if exc.line == 1:
            raise ImportFailed([(exc.line, exc.message)]) from None
        yield exc.line, None, None, None, None, exc.message, "", ""


def dedup_key(user_pk, item_pk, event, value, timestamp, ref=""):
    raw = f"{user_pk}\x1f{item_pk}\x1f{event}\x1f{value!r}\x1f{timestamp.timestamp()!r}"
    if ref:  # without a ref, the key rows had before the column existed
        raw += f"\x1f{ref}"
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


class _Resolver:
    """Maps external ids to primary keys, one query per batch, with a bounded cache."""

    def __init__(self, model, field_name):
        self.model = model
        self.field = field_name
        self.cache = {}

    def resolve(self, ids):
        missing = {i for i in ids if i not in self.cache}
        if len(self.cache) + len(missing) > _LOOKUP_CACHE_LIMIT:
            self.cache.clear()
            missing = set(ids)
        if missing:
            lookup = list(missing)
            if self.field == "pk":
                lookup = [int(i) for i in lookup if i.isdigit()]
            for chunk in range(0, len(lookup), 900):  # SQLite's bound-parameter limit
                part = lookup[chunk:chunk + 900]
                rows = self.model._default_manager.filter(**{f"{self.field}__in": part})
                for ext, pk in rows.values_list(self.field, "pk"):
                    self.cache[str(ext)] = pk
        return self.cache


class _BulkWriter:
    """Inserts rows whose import key is new; returns how many were inserted.

    PostgreSQL: COPY into a temporary table, then one INSERT ... ON CONFLICT DO
    NOTHING. SQLite: INSERT OR IGNORE through executemany. Others: bulk_create
    after looking up the keys already present.
    """

    FIELDS = ("user", "session_key", "item", "event", "value", "timestamp", "context", "ref", "dedup_key")

    def __init__(self, using=DEFAULT_DB_ALIAS):
        self.using = using
        self.connection = connections[using]
        meta = Interaction._meta
        quote = self.connection.ops.quote_name
        self.table = quote(meta.db_table)
        self.columns = ", ".join(quote(meta.get_field(name).column) for name in self.FIELDS)
        self.temp_table = None

    def insert(self, rows):
        if not rows:
            return 0
        vendor = self.connection.vendor
        with self.connection.cursor() as cursor:
            if vendor == "postgresql":
                return self._copy_postgresql(cursor, rows)
            if vendor == "sqlite":
                adapt = self.connection.ops.adapt_datetimefield_value
                cursor.executemany(
                    f"INSERT OR IGNORE INTO {self.table} ({self.columns}) VALUES ({', '.join(['%s'] * 9)})",
                    [(*row[:5], adapt(row[5]), *row[6:]) for row in rows])
                return cursor.rowcount
        return self._bulk_create(rows)

    def _copy_postgresql(self, cursor, rows):
        if self.temp_table is None:
            self.temp_table = "recommender_import_rows"
            # IF NOT EXISTS: inside an outer transaction (tests) ON COMMIT DROP waits.
            cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.temp_table} ON COMMIT DROP AS "
                           f"SELECT {self.columns} FROM {self.table} WITH NO DATA")
            cursor.execute(f"TRUNCATE {self.temp_table}")
        raw = cursor.cursor  # psycopg's own cursor, for COPY
        with raw.copy(f"COPY {self.temp_table} ({self.columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(f"INSERT INTO {self.table} ({self.columns}) SELECT {self.columns} "
                       f"FROM {self.temp_table} ON CONFLICT DO NOTHING")
        created = cursor.rowcount
        cursor.execute(f"TRUNCATE {self.temp_table}")
        return created

    def _bulk_create(self, rows):
        keys = [row[8] for row in rows]
        existing = set()
        for chunk in range(0, len(keys), 900):
            existing.update(Interaction.objects.using(self.using).filter(
                dedup_key__in=keys[chunk:chunk + 900]).values_list("dedup_key", flat=True))
        attnames = [Interaction._meta.get_field(name).attname for name in self.FIELDS]
        new = [Interaction(**dict(zip(attnames, row, strict=True))) for row in rows if row[8] not in existing]
        Interaction.objects.using(self.using).bulk_create(new, ignore_conflicts=True)
        return len(new)


def import_rows(rows, *, item_field=None, user_field=None, batch_size=None, progress=None):
    """Insert interaction rows; all or nothing.

    Parameters
    ----------
    rows : iterable of ``(line_no, user_id, item_id, event, value, timestamp[, ref[, context]])``
        ``value`` and ``timestamp`` may be strings (as read from CSV) or parsed
        values; a row whose ``event`` is None carries a reading error in ``timestamp``.
        ``ref`` (optional, a string) tells otherwise identical rows apart; ``context``
        (optional) is the page or block that led to the event.
    item_field, user_field : str
        Fields matched against ``item_id`` / ``user_id`` (default: the settings'
        ``ITEM_FIELDS["external_id"]`` or ``"pk"``, and ``USER_ID_FIELD``).
    progress : callable, optional
        Called with the number of rows handled after each batch.

    Values and timestamps follow :mod:`recommender.tracking.csvformat` (naive times are in
    ``TIME_ZONE``). Raises ``ImportFailed`` naming each bad line; then nothing is stored.
    """
    item_field = item_field or rec_settings.item_field("external_id") or "pk"
    user_field = user_field or rec_settings.USER_ID_FIELD or "pk"
    batch_size = batch_size or rec_settings.IMPORT_BATCH_SIZE
    events = rec_settings.event_weights
    items = _Resolver(rec_settings.item_model(), item_field)
    users = _Resolver(get_user_model(), user_field)
    tz = timezone.get_default_timezone()
    result = ImportResult()
    writer = _BulkWriter()

    def flush(batch):
        # Rows repeated within the batch are caught here; rows of earlier
        # batches or earlier imports are already in the table.
        if not batch:
            return
        seen_in_batch = set()
        item_map = items.resolve({r[2] for r in batch})
        user_map = users.resolve({r[1] for r in batch})
        new_rows = []
        for line, user_id, item_id, event, value, ts, ref, context in batch:
            user_pk = user_map.get(user_id)
            item_pk = item_map.get(item_id)
            if user_pk is None:
                result.errors.append((line, f"no user with {user_field}={user_id!r}"))
            if item_pk is None:
                result.errors.append((line, f"no item with {item_field}={item_id!r}"))
            if user_pk is None or item_pk is None or result.errors:
                continue
            key = dedup_key(user_pk, item_pk, event, value, ts, ref)
            if key in seen_in_batch:
                result.skipped += 1
                continue
            seen_in_batch.add(key)
            new_rows.append((user_pk, "", item_pk, event, value, ts, context, ref, key))
        if result.errors:
            return
        created = writer.insert(new_rows)
        result.created += created
        result.skipped += len(new_rows) - created

    with transaction.atomic():
        batch = []
        for line, user_id, item_id, event, value, ts, *rest in rows:
            result.rows += 1
            if event is None:
                result.errors.append((line, ts))
            else:
                try:
                    batch.append(_clean_row(line, user_id, item_id, event, value, ts, rest, events, tz))
                except ValueError as exc:
                    result.errors.append((line, str(exc)))
            if len(result.errors) >= MAX_REPORTED_ERRORS:
                raise ImportFailed(result.errors[:MAX_REPORTED_ERRORS], truncated=True)
            if len(batch) >= batch_size:
                flush(batch)
                batch = []
                if progress:
                    progress(result.rows)
        flush(batch)
        if progress:
            progress(result.rows)
        if result.errors:
            result.errors.sort()
            raise ImportFailed(result.errors[:MAX_REPORTED_ERRORS],
                               truncated=len(result.errors) > MAX_REPORTED_ERRORS)
    return result


def _clean_row(line, user_id, item_id, event, value, ts, rest, events, tz):
    """One row with its ids stripped and its value and time checked, or ValueError."""
    ref = str(rest[0]).strip() if rest and rest[0] is not None else ""
    context = str(rest[1]).strip() if len(rest) > 1 and rest[1] is not None else ""
    user_id, item_id = str(user_id).strip(), str(item_id).strip()
    if not user_id:
        raise ValueError("user_id is empty")
    if not item_id:
        raise ValueError("item_id is empty")
    event = event.strip()
    if event not in events:
        raise ValueError(f"unknown event {event!r} (known: {', '.join(sorted(events))})")
    for name, text in (("ref", ref), ("context", context)):
        if len(text) > csvformat.MAX_TEXT_LENGTH:
            raise ValueError(f"the {name} is longer than {csvformat.MAX_TEXT_LENGTH} characters")
    value = csvformat.clean_value(event, value)
    csvformat.clean_context(event, context)
    if isinstance(ts, dt.datetime):
        ts = csvformat.check_timestamp(ts, tz)
    else:
        ts = csvformat.parse_timestamp(str(ts), tz)
    return line, user_id, item_id, event, value, ts, ref, context


def export_rows(queryset=None, *, item_field=None, user_field=None, chunk_size=5000):
    """Yield CSV rows (lists of strings, :data:`csvformat.EXPORT_HEADER`) for interactions of
    known users, in time order."""
    item_field = item_field or rec_settings.item_field("external_id") or "pk"
    user_field = user_field or rec_settings.USER_ID_FIELD or "pk"
    qs = queryset if queryset is not None else Interaction.objects.all()
    user_col = "user_id" if user_field in ("pk", "id") else f"user__{user_field}"
    item_col = "item_id" if item_field == "pk" else f"item__{item_field}"
    qs = qs.filter(user__isnull=False).order_by("timestamp", "id")
    for user_id, item_id, event, value, ts, ref, context in qs.values_list(
        user_col, item_col, "event", "value", "timestamp", "ref", "context"
    ).iterator(chunk_size=chunk_size):
        yield [str(user_id), str(item_id), event, csvformat.format_value(value),
               csvformat.format_timestamp(ts), ref, context]
