"""The one definition of the CSV interaction format and of what a valid event value is.

``user_id,item_id,event,value,timestamp`` and optionally ``ref`` and ``context`` (in either
order). Used by ``recommender_import``, ``recommender_export``, ``recommender_evaluate``
(through :mod:`recommender.engine.data`), ``track()`` and the events API. This module
imports neither Django nor numpy, so the engine can use it.

- Timestamps: ISO 8601 or Unix seconds. A naive timestamp is in the time zone the caller
  passes: the import, ``recommender_export --since/--until`` and ``recommender_evaluate``
  pass ``TIME_ZONE``; the engine alone (no settings) uses UTC. Export writes UTC with its
  offset, so its files have no naive timestamps. A time that is not between the years 1
  and 9999 once converted to UTC cannot be stored and is refused.
- Values: :func:`clean_value` is the rule for every way an event comes in.
- Contexts: :func:`clean_context` checks the training run a context names
  (``<block>:<algorithm>@<run>``); :func:`split_run` reads it.
- Event weights: :data:`BUILTIN_EVENTS` (``RECOMMENDER["EVENT_WEIGHTS"]`` adds to it) and
  :func:`event_weight`, the weight one event gives the training matrix.
"""

import codecs
import csv
import datetime as dt
import gzip
import math
import zlib
from decimal import Decimal
from numbers import Real

HEADER = ("user_id", "item_id", "event", "value", "timestamp")
#: Optional columns after the five required ones, in either order.
OPTIONAL_COLUMNS = ("ref", "context")
#: What export writes: the import format with both optional columns.
EXPORT_HEADER = HEADER + OPTIONAL_COLUMNS
#: Longest ``ref`` and ``context`` (the database columns' length).
MAX_TEXT_LENGTH = 100

#: Built-in event types and their default weights in the user-item matrix.
BUILTIN_EVENTS = {
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 4.0,
    "remove_from_cart": -2.0,
    "purchase": 8.0,
    "rating": 1.0,
    # Shown in a recommendation block; recorded for click-through rates, not trained on.
    "impression": 0.0,
}

#: Largest accepted |value| of any event (a quantity, an amount, a site-defined score).
MAX_ABS_VALUE = 1e6
#: Accepted ratings, both ends included.
RATING_RANGE = (0.0, 10.0)
#: A training weight (event weight x rating) beyond this, or not finite, is skipped.
MAX_ABS_WEIGHT = MAX_ABS_VALUE


def clean_value(event, value):
    """The value of an event as a float (or None), or ValueError saying why it is refused.

    Accepts None, a number (``Decimal`` too) or a number's text (``""`` is None). Refused: ``True``/``False``,
    NaN and infinities, |value| > :data:`MAX_ABS_VALUE`, a negative value of a built-in
    event other than a rating (quantities and amounts; a return is its own event), and a
    rating outside :data:`RATING_RANGE`.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (Real, Decimal, str)):
        raise ValueError(f"the value {value!r} is not a number")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"the value {text!r} is not a number") from None
    else:
        number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"the value {value!r} is not a finite number")
    if abs(number) > MAX_ABS_VALUE:
        raise ValueError(f"the value {value!r} is beyond ±{MAX_ABS_VALUE:g}")
    if event == "rating":
        low, high = RATING_RANGE
        if not low <= number <= high:
            raise ValueError(f"the rating {value!r} is outside {low:g} to {high:g}")
    elif event in BUILTIN_EVENTS and number < 0:
        raise ValueError(f"the value {value!r} of a {event} is negative")
    return number


#: Largest training run id a context can name (``DailyBlockStats.run`` is a 64-bit column).
MAX_RUN = 2**63 - 1


def split_run(algorithm):
    """``(name, run)`` of the algorithm part of a context: ``"itemknn@42"`` -> ``("itemknn", 42)``.

    ``run`` is 0 when the text names none. After the last ``@``, text that starts with a
    letter is part of the name (``"odd@name"`` -> ``("odd@name", 0)``); anything else (a
    digit, a sign, a space, nothing) is a run and must be an integer from 0 to
    :data:`MAX_RUN` in ASCII digits, else ValueError.
    """
    name, at, suffix = algorithm.rpartition("@")
    if not at or suffix[:1].isalpha():
        return algorithm, 0
    if not (suffix.isascii() and suffix.isdigit()) or int(suffix) > MAX_RUN:
        raise ValueError(f"the training run {suffix!r} after '@' is not an integer from 0 to {MAX_RUN}")
    return name, int(suffix)


#: Events whose context names a block, its algorithm and its training run (the others' is free text).
RUN_EVENTS = frozenset({"impression", "click"})


def clean_context(event, context):
    """The context of an event as text (None is ``""``), or ValueError when it is an impression's
    or a click's and the training run it names (``<block>:<algorithm>@<run>``, see
    :func:`split_run`) is not an integer from 0 to :data:`MAX_RUN`. A context without ``:``
    (a page's name) names no run; other events' contexts are not read."""
    if context is None:
        return ""
    context = str(context)
    _block, colon, algorithm = context.partition(":")
    if colon and event in RUN_EVENTS:
        split_run(algorithm)
    return context


def event_weight(event, value, weights):
    """Weight of one event in the training matrix: the event's weight, times the value for
    a rating. An event without a weight counts 0 (``training.dataset`` leaves it out)."""
    weight = float(weights.get(event, 0.0))
    if event == "rating" and value is not None:
        weight *= value
    return weight


def usable_weight(weight):
    """Whether a training weight is finite and within ±:data:`MAX_ABS_WEIGHT`."""
    return math.isfinite(weight) and abs(weight) <= MAX_ABS_WEIGHT


def parse_timestamp(text, tz):
    """An aware datetime from ISO 8601 or Unix seconds; a naive time is in ``tz``.

    Raises ValueError for an empty, unreadable or unrepresentable time.
    """
    text = text.strip()
    if not text:
        raise ValueError("the timestamp is empty")
    if text.replace(".", "", 1).isdigit():
        try:
            return dt.datetime.fromtimestamp(float(text), tz=dt.UTC)
        except (OverflowError, ValueError, OSError):
            raise ValueError(f"the timestamp {text!r} is outside the years 1 to 9999") from None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"the timestamp {text!r} is not ISO 8601 or Unix seconds") from None
    return check_timestamp(value, tz, text)


def check_timestamp(value, tz, text=None):
    """``value`` made aware (naive: in ``tz``) if it is representable in UTC, else ValueError."""
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=tz)
    try:
        value.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        raise ValueError(f"the timestamp {text or value.isoformat()!r} is outside the years 1 to 9999 "
                         f"in UTC") from None
    return value


def format_value(value):
    """The CSV text of a value: ``""`` for none, integers without ``.0``, floats exactly."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def format_timestamp(value):
    """The CSV text of an aware datetime: ISO 8601 in UTC with its offset."""
    return value.astimezone(dt.UTC).isoformat()


class CSVFormatError(ValueError):
    """A file that cannot be read as CSV text; ``line`` is where it fails."""

    def __init__(self, line, message):
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}")


def open_binary(path):
    """Open a CSV file as bytes; ``.gz`` files are decompressed."""
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def _text_lines(binary, position):
    """UTF-8 lines (BOM removed) of a binary stream; ``position[0]`` is the line being read.

    Decoding line by line puts a decoding error, a NUL byte or a broken gzip stream at
    its own line.
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    lines = iter(binary)
    while True:
        position[0] += 1
        try:
            raw = next(lines)
        except StopIteration:
            return
        except EOFError:
            raise CSVFormatError(position[0], "the gzip file is truncated (it ends before its end marker)") from None
        except gzip.BadGzipFile as exc:
            raise CSVFormatError(position[0], f"not a gzip file ({exc})") from None
        except zlib.error as exc:
            raise CSVFormatError(position[0], f"the gzip data is corrupt ({exc})") from None
        if b"\x00" in raw:
            raise CSVFormatError(position[0], "contains a NUL byte: this is not a CSV text file")
        try:
            yield decoder.decode(raw)
        except UnicodeDecodeError as exc:
            raise CSVFormatError(position[0], f"not UTF-8 text ({exc.reason} at byte {exc.start + 1} "
                                              f"of the line)") from None


def records(binary):
    """Yield ``(line, fields)`` of every non-empty CSV record of a binary stream.

    ``line`` is where the record starts. Raises :class:`CSVFormatError` at the line where
    the file stops being readable: an unclosed quote is reported where it opened.
    """
    position = [0]
    reader = csv.reader(_text_lines(binary, position), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = str(exc)
            if "unexpected end of data" in reason:
                raise CSVFormatError(start, "a quoted field opened on this line is never closed") from None
            if "field larger than field limit" in reason:
                raise CSVFormatError(start, f"a field is longer than {csv.field_size_limit():,} characters "
                                            f"(an unclosed quote?)") from None
            raise CSVFormatError(start, f"malformed CSV ({reason})") from None
        if row and row != [""]:
            yield start, row


def parse_header(fields):
    """The column names of a header row, or ValueError naming what is expected."""
    names = [name.strip().lower() for name in fields]
    extra = names[len(HEADER):]
    if (tuple(names[:len(HEADER)]) != HEADER or len(set(extra)) != len(extra)
            or not set(extra) <= set(OPTIONAL_COLUMNS)):
        raise ValueError(f"the header is {','.join(fields)!r}; expected {','.join(HEADER)!r} "
                         f"optionally followed by {' and '.join(OPTIONAL_COLUMNS)} (in either order)")
    return names
