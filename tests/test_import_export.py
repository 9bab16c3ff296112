"""recommender_import / recommender_export: streaming, line-numbered errors, idempotent."""

import gzip
import io

import pytest
from django.core.management import CommandError, call_command

from recommender.models import Interaction

HEADER = "user_id,item_id,event,value,timestamp\n"


@pytest.fixture
def shoppers(catalog, alice, bob):
    return catalog, alice, bob


def write(tmp_path, text, name="events.csv"):
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return str(path)


def rows_for(alice, bob):
    return HEADER + (
        f"{alice.pk},10000,view,,2011-01-02T10:00:00\n"
        f"{alice.pk},10001,purchase,6,2011-01-02 10:05\n"
        f"{bob.pk},10002,rating,4.5,1294000000\n"
        f"{bob.pk},10002,rating,4.5,1294000000\n"  # the same event twice: stored once
    )


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["events.csv", "events.csv.gz"])
def test_import_by_external_id_is_idempotent(tmp_path, shoppers, name):
    catalog, alice, bob = shoppers
    path = write(tmp_path, rows_for(alice, bob), name)
    out = io.StringIO()
    call_command("recommender_import", path, "--no-progress", stdout=out)
    assert "Imported 3 interactions from 4 rows (1 already present)" in out.getvalue()
    assert Interaction.objects.count() == 3
    purchase = Interaction.objects.get(event="purchase")
    assert (purchase.user, purchase.item, purchase.value) == (alice, catalog[1], 6.0)
    assert purchase.timestamp.isoformat() == "2011-01-02T10:05:00+00:00"
    out = io.StringIO()
    call_command("recommender_import", path, "--no-progress", stdout=out)
    assert "Imported 0 interactions from 4 rows (4 already present)" in out.getvalue()
    assert Interaction.objects.count() == 3


@pytest.mark.django_db
def test_import_by_primary_key_and_username(tmp_path, shoppers):
    catalog, alice, bob = shoppers
    path = write(tmp_path, HEADER + f"bob,{catalog[2].pk},click,,2011-05-01T00:00:00Z\n")
    call_command("recommender_import", path, "--no-progress", "--item-field", "pk",
                 "--user-field", "username", stdout=io.StringIO())
    row = Interaction.objects.get()
    assert (row.user, row.item, row.event) == (bob, catalog[2], "click")


@pytest.mark.django_db
def test_bad_rows_name_their_lines_and_nothing_is_stored(tmp_path, shoppers):
    catalog, alice, bob = shoppers
    text = HEADER + (
        f"{alice.pk},10000,view,,2011-01-02T10:00:00\n"     # line 2: fine
        f"{alice.pk},99999,view,,2011-01-02T10:00:00\n"     # line 3: unknown item
        f"{alice.pk},10000,levitate,,2011-01-02T10:00:00\n"  # line 4: unknown event
        f"{alice.pk},10000,rating,five,2011-01-02T10:00:00\n"  # line 5: bad value
        f"{alice.pk},10000,view,,yesterday\n"                # line 6: bad timestamp
        f"4242,10000,view,,2011-01-02T10:00:00\n"            # line 7: unknown user
        f"{alice.pk},10000,view\n"                           # line 8: short row
    )
    with pytest.raises(CommandError) as excinfo:
        call_command("recommender_import", write(tmp_path, text), "--no-progress")
    message = str(excinfo.value)
    for line, words in [(3, "no item with stock_code='99999'"), (4, "unknown event 'levitate'"),
                        (5, "the value 'five' is not a number"),
                        (6, "the timestamp 'yesterday' is not ISO 8601"),
                        (7, "no user with pk='4242'"), (8, "expected 5 columns, found 3")]:
        assert f"line {line}: {words}" in message
    assert "line 2:" not in message
    assert "nothing was imported" in message
    assert not Interaction.objects.exists()


@pytest.mark.django_db
def test_bad_header_and_missing_file(tmp_path, shoppers):
    with pytest.raises(CommandError, match="line 1: the header is"):
        call_command("recommender_import", write(tmp_path, "user,item\n1,2\n"), "--no-progress")
    with pytest.raises(CommandError, match="no such file"):
        call_command("recommender_import", str(tmp_path / "missing.csv"))


@pytest.mark.django_db
def test_import_streams_in_batches(tmp_path, shoppers):
    catalog, alice, bob = shoppers
    lines = [f"{alice.pk},{10000 + i % 3},view,,2011-01-01T00:{i // 60:02d}:{i % 60:02d}\n" for i in range(250)]
    path = write(tmp_path, HEADER + "".join(lines))
    call_command("recommender_import", path, "--no-progress", "--batch-size", "40", stdout=io.StringIO())
    assert Interaction.objects.count() == 250


def stored_rows():
    """Every stored row of known users, as the CSV round trip must keep it."""
    return sorted(Interaction.objects.filter(user__isnull=False).values_list(
        "user__username", "item__stock_code", "event", "value", "timestamp", "ref", "context"))


@pytest.mark.django_db
def test_export_round_trips_through_import(tmp_path, shoppers):
    catalog, alice, bob = shoppers
    source = write(tmp_path, HEADER.strip() + ",context,ref\n" + (
        f"{alice.pk},10000,view,,2011-01-02T10:00:00,home,\n"
        f"{alice.pk},10001,purchase,6,2011-01-02 10:05,,\n"
        # the same purchase on two orders in the same minute: two rows, told apart by their refs
        f"{alice.pk},10001,purchase,2,2011-01-02T10:06:00,,536365\n"
        f"{alice.pk},10001,purchase,2,2011-01-02T10:06:00,,536366\n"
        f'{bob.pk},10002,rating,4.5,1294000000,"similar, ""quoted""",\n'
    ))
    call_command("recommender_import", source, "--no-progress", stdout=io.StringIO())
    from recommender import track

    track(bob, catalog[3], "click", value=0.1 + 0.2, context="tracked")  # a float that needs repr
    track("anonymous-session", catalog[0], "view")  # anonymous rows are not exported
    before = stored_rows()
    assert len(before) == 6
    exported = tmp_path / "out.csv"
    call_command("recommender_export", "-o", str(exported), stdout=io.StringIO())
    lines = exported.read_text().splitlines()
    assert lines[0] == "user_id,item_id,event,value,timestamp,ref,context"
    assert lines[1:5] == [
        f"{alice.pk},10000,view,,2011-01-02T10:00:00+00:00,,home",
        f"{alice.pk},10001,purchase,6,2011-01-02T10:05:00+00:00,,",
        f"{alice.pk},10001,purchase,2,2011-01-02T10:06:00+00:00,536365,",
        f"{alice.pk},10001,purchase,2,2011-01-02T10:06:00+00:00,536366,",
    ]
    Interaction.objects.all().delete()
    out = io.StringIO()
    call_command("recommender_import", str(exported), "--no-progress", stdout=out)
    assert "Imported 6 interactions from 6 rows" in out.getvalue()
    assert stored_rows() == before  # every row: value, time, ref and context
    again = tmp_path / "again.csv"
    call_command("recommender_export", "-o", str(again), stdout=io.StringIO())
    assert again.read_text() == exported.read_text()
    out = io.StringIO()
    call_command("recommender_import", str(exported), "--no-progress", stdout=out)
    assert "Imported 0 interactions from 6 rows (6 already present)" in out.getvalue()


@pytest.mark.django_db
def test_export_filters(tmp_path, shoppers):
    catalog, alice, bob = shoppers
    call_command("recommender_import", write(tmp_path, rows_for(alice, bob)), "--no-progress",
                 stdout=io.StringIO())
    out = io.StringIO()
    call_command("recommender_export", "--event", "rating", "--since", "2011-01-02", stdout=out)
    assert out.getvalue().splitlines()[1:] == [f"{bob.pk},10002,rating,4.5,2011-01-02T20:26:40+00:00,,"]


@pytest.mark.django_db
def test_naive_times_are_in_time_zone_for_import_and_export(tmp_path, shoppers, settings):
    catalog, alice, bob = shoppers
    settings.TIME_ZONE = "Asia/Shanghai"  # UTC+8
    path = write(tmp_path, HEADER + f"{alice.pk},10000,view,,2011-01-02T10:00:00\n")
    call_command("recommender_import", path, "--no-progress", stdout=io.StringIO())
    assert Interaction.objects.get().timestamp.isoformat() == "2011-01-02T02:00:00+00:00"
    out = io.StringIO()
    # naive bounds are Shanghai time too: 09:00 there is 01:00 UTC, before the row
    call_command("recommender_export", "--since", "2011-01-02T09:00", stdout=out)
    assert out.getvalue().splitlines()[1:] == [f"{alice.pk},10000,view,,2011-01-02T02:00:00+00:00,,"]
    out = io.StringIO()
    call_command("recommender_export", "--until", "2011-01-02T09:59", stdout=out)
    assert out.getvalue().splitlines()[1:] == []


@pytest.mark.django_db
def test_a_ref_column_tells_identical_rows_apart(tmp_path, shoppers):
    catalog, alice, bob = shoppers
    plain = write(tmp_path, HEADER + f"{alice.pk},10001,purchase,2,2011-01-02T10:05:00\n", "plain.csv")
    call_command("recommender_import", plain, "--no-progress", stdout=io.StringIO())
    # the same purchase on two invoices in the same minute, and a row without a ref
    path = write(tmp_path, HEADER.strip() + ",ref\n" + (
        f"{alice.pk},10001,purchase,2,2011-01-02T10:05:00,536365\n"
        f"{alice.pk},10001,purchase,2,2011-01-02T10:05:00,536366\n"
        f"{alice.pk},10001,purchase,2,2011-01-02T10:05:00,\n"     # = the plain file's row
        f"{bob.pk},10002,view,,2011-01-03T09:00:00,\n"
    ), "refs.csv")
    out = io.StringIO()
    call_command("recommender_import", path, "--no-progress", stdout=out)
    assert "Imported 3 interactions from 4 rows (1 already present)" in out.getvalue()
    assert Interaction.objects.filter(user=alice, item=catalog[1]).count() == 3
    out = io.StringIO()
    call_command("recommender_import", path, "--no-progress", stdout=out)  # still idempotent
    assert "Imported 0 interactions from 4 rows (4 already present)" in out.getvalue()
    assert Interaction.objects.count() == 4


@pytest.mark.django_db
def test_a_ref_column_row_with_the_wrong_width_names_its_line(tmp_path, shoppers):
    _catalog, alice, _bob = shoppers
    path = write(tmp_path, HEADER.strip() + ",ref\n" + f"{alice.pk},10001,purchase,2,2011-01-02T10:05:00\n")
    with pytest.raises(CommandError, match="line 2: expected 6 columns, found 5"):
        call_command("recommender_import", path, "--no-progress", stdout=io.StringIO())
    assert Interaction.objects.count() == 0
