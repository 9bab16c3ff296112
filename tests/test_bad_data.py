"""Bad data is refused where it enters (API, track(), CSV import) and never poisons training."""

import csv
import datetime as dt
import gzip
import io

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from recommender import track
from recommender.models import Interaction
from recommender.tracking import csvformat
from recommender.tracking.events import TrackingError
from recommender.training.dataset import load_interactions

HEADER = "user_id,item_id,event,value,timestamp\n"

#: (event, value as sent) pairs every entry point must refuse.
BAD_VALUES = [
    ("rating", 1e308),
    ("rating", "NaN"),
    ("view", "Infinity"),
    ("click", "-inf"),
    ("purchase", True),
    ("purchase", -3),
    ("add_to_cart", 2e6),
    ("rating", 11),
    ("rating", -1),
]


def test_clean_value_is_the_rule():
    assert csvformat.clean_value("rating", "4.5") == 4.5
    assert csvformat.clean_value("purchase", 3) == 3.0
    assert csvformat.clean_value("view", "") is None
    assert csvformat.clean_value("wishlist", -5) == -5.0  # a site's own event may be negative
    for event, value in BAD_VALUES:
        with pytest.raises(ValueError):
            csvformat.clean_value(event, value)


@pytest.mark.django_db
@pytest.mark.parametrize(("event", "value"), BAD_VALUES)
def test_the_events_api_refuses_bad_values(client, catalog, alice, event, value):
    client.force_login(alice)
    url = reverse("recommender:events")
    response = client.post(url, {"item": catalog[0].pk, "event": event, "value": value},
                           content_type="application/json")
    assert response.status_code == 400, response.content
    assert "value" in response.json()
    assert not Interaction.objects.exists()


@pytest.mark.django_db
def test_the_events_api_refuses_an_overflowing_json_number_in_a_batch(client, catalog, alice):
    client.force_login(alice)
    body = (f'[{{"item": {catalog[0].pk}, "event": "view"}}, '
            f'{{"item": {catalog[1].pk}, "event": "rating", "value": 1e400}}]')  # 1e400 parses as infinity
    response = client.post(reverse("recommender:events"), body, content_type="application/json")
    assert response.status_code == 400
    assert "value" in response.json()["events"][1]
    good = client.post(reverse("recommender:events"), {"item": catalog[0].pk, "event": "rating", "value": 4},
                       content_type="application/json")
    assert good.status_code == 201 and Interaction.objects.get().value == 4.0


@pytest.mark.django_db
@pytest.mark.parametrize(("event", "value"), BAD_VALUES)
def test_track_refuses_bad_values(catalog, alice, event, value):
    with pytest.raises(TrackingError, match="value|rating"):
        track(alice, catalog[0], event, value=value)
    assert not Interaction.objects.exists()


def write(tmp_path, text, name="events.csv"):
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    return str(path)


def import_error(path):
    with pytest.raises(CommandError) as excinfo:
        call_command("recommender_import", path, "--no-progress", stdout=io.StringIO())
    assert not Interaction.objects.exists()
    return str(excinfo.value)


@pytest.mark.django_db
def test_csv_import_refuses_bad_values_by_line(tmp_path, catalog, alice):
    rows = "".join(f"{alice.pk},10000,{event},{str(value).lower()},2011-01-02T10:00:00\n"
                   for event, value in BAD_VALUES)
    message = import_error(write(tmp_path, HEADER + rows))
    for line in range(2, 2 + len(BAD_VALUES)):
        assert f"line {line}: the " in message
    assert "line 2: the value '1e+308' is beyond ±1e+06" in message
    assert "line 3: the value 'nan' is not a finite number" in message
    assert "line 6: the value 'true' is not a number" in message
    assert "line 7: the value '-3' of a purchase is negative" in message
    assert "line 9: the rating '11' is outside 0 to 10" in message


@pytest.mark.django_db
@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00",
                                   "100000000000000000000"])
def test_csv_import_refuses_unrepresentable_timestamps(tmp_path, catalog, alice, stamp):
    text = HEADER + f"{alice.pk},10000,view,,2011-01-02T10:00:00\n{alice.pk},10001,view,,{stamp}\n"
    message = import_error(write(tmp_path, text))
    assert f"line 3: the timestamp '{stamp}' is outside the years 1 to 9999" in message


@pytest.mark.django_db
def test_csv_import_refuses_over_long_ref_and_context(tmp_path, catalog, alice):
    text = (HEADER.strip() + ",ref,context\n" + f"{alice.pk},10000,view,,2011-01-02T10:00:00,{'r' * 101},\n"
            f"{alice.pk},10000,view,,2011-01-02T10:00:00,,{'c' * 101}\n")
    message = import_error(write(tmp_path, text))
    assert "line 2: the ref is longer than 100 characters" in message
    assert "line 3: the context is longer than 100 characters" in message


def good_rows(alice, n):
    return "".join(f"{alice.pk},1000{i % 3},view,,2011-01-02T10:{i // 60:02d}:{i % 60:02d}\n" for i in range(n))


@pytest.mark.django_db
def test_unreadable_files_name_their_line(tmp_path, catalog, alice):
    text = HEADER + good_rows(alice, 3000)
    whole = gzip.compress(text.encode())
    truncated = tmp_path / "truncated.csv.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    message = import_error(str(truncated))
    assert "the gzip file is truncated" in message and "line 1:" not in message

    plain = tmp_path / "plain.csv.gz"
    plain.write_bytes(text.encode())
    assert "line 1: not a gzip file" in import_error(str(plain))

    nul = write(tmp_path, HEADER + good_rows(alice, 3) + f"{alice.pk},10000,vi\x00ew,,2011-01-02T10:00:00\n")
    assert "line 5: contains a NUL byte" in import_error(nul)

    latin = tmp_path / "latin.csv"
    latin.write_bytes((HEADER + good_rows(alice, 2)).encode() + f"{alice.pk},caf\xe9,view,,1\n".encode("latin-1"))
    assert "line 4: not UTF-8 text" in import_error(str(latin))

    unclosed = write(tmp_path, HEADER + good_rows(alice, 2) + f'{alice.pk},10000,view,,"2011-01-02\n'
                     + good_rows(alice, 5))
    assert "line 4: a quoted field opened on this line is never closed" in import_error(unclosed)

    long_field = write(tmp_path, HEADER + good_rows(alice, 1) + f"{alice.pk},{'9' * (csv.field_size_limit() + 1)},"
                       f"view,,2011-01-02T10:00:00\n")
    assert f"line 3: a field is longer than {csv.field_size_limit():,} characters" in import_error(long_field)


@pytest.mark.django_db
def test_a_late_unreadable_line_keeps_the_errors_before_it(tmp_path, catalog, alice):
    text = HEADER + f"{alice.pk},10000,levitate,,2011-01-02T10:00:00\n" + good_rows(alice, 2) + "1,2,\x00\n"
    message = import_error(write(tmp_path, text))
    assert "line 2: unknown event 'levitate'" in message
    assert "line 5: contains a NUL byte" in message


@pytest.mark.django_db
def test_training_skips_a_stored_absurd_value(catalog, alice, bob, caplog):
    now = timezone.now() - dt.timedelta(hours=1)
    track(alice, catalog[0], "purchase", timestamp=now)
    track(bob, catalog[1], "rating", value=4, timestamp=now)
    # Stored before values were checked, or written around track(): the rating weighs 1e308.
    Interaction.objects.create(user=bob, item=catalog[2], event="rating", value=1e308, timestamp=now)
    Interaction.objects.create(user=bob, item=catalog[2], event="rating", value=float("inf"), timestamp=now)
    data = load_interactions(log_damping=True, with_timestamps=True)
    assert data.skipped == 2
    assert np.isfinite(data.matrix.data).all() and data.matrix.nnz == 2
    assert data.n_interactions == 2
    assert "skipped 2 interaction(s)" in caplog.text


@pytest.mark.django_db
def test_training_with_nothing_to_skip(catalog, alice):
    track(alice, catalog[0], "view")
    assert load_interactions().skipped == 0
