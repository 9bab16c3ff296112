"""recommender_evaluate runs on CSV files alone and reports every metric per algorithm."""

import io
import json

import pytest
from django.core.management import CommandError, call_command


def write_interactions(path):
    # Two taste groups: users 0-9 like items a*, users 10-19 like items b*.
    lines = ["user_id,item_id,event,value,timestamp"]
    t = 1_600_000_000
    for user in range(20):
        group = "a" if user < 10 else "b"
        for n in range(6):
            item = f"{group}{(user + n) % 6}"
            lines.append(f"u{user},{item},purchase,1,{t + user * 100 + n}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_evaluate_prints_a_table_and_json(tmp_path):
    path = write_interactions(tmp_path / "events.csv")
    out = io.StringIO()
    call_command("recommender_evaluate", "--interactions", path, "--algorithms", "popular", "itemknn",
                 "--k", "3", "--json", stdout=out)
    table = {row["algorithm"]: row for row in json.loads(out.getvalue())}
    assert set(table) == {"popular", "itemknn"}
    for metric in ("precision", "recall", "f1", "ndcg", "map", "hit_rate", "coverage"):
        assert 0 <= table["itemknn"][metric] <= 1
    assert table["itemknn"]["novelty"] > 0
    # the neighbourhood model sees the two groups; popularity cannot
    assert table["itemknn"]["ndcg"] > table["popular"]["ndcg"]
    out = io.StringIO()
    call_command("recommender_evaluate", "--interactions", path, "--algorithms", "popular", stdout=out)
    assert out.getvalue().startswith("| algorithm")


def test_evaluate_errors(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        call_command("recommender_evaluate", "--interactions", str(tmp_path / "nope.csv"))
    path = write_interactions(tmp_path / "events.csv")
    with pytest.raises(CommandError, match="need --items"):
        call_command("recommender_evaluate", "--interactions", path, "--algorithms", "content")


def evaluate_json(*args):
    out = io.StringIO()
    call_command("recommender_evaluate", *args, "--json", stdout=out)
    return {row["algorithm"]: row for row in json.loads(out.getvalue())}


def test_impressions_and_negative_events_are_not_positives(tmp_path):
    train = write_interactions(tmp_path / "train.csv")
    t = 1_700_000_000
    lines = ["user_id,item_id,event,value,timestamp"]  # users 0-9 bought only a* items
    lines += [f"u{user},b{user % 6},impression,,{t}" for user in range(5)]   # weight 0
    lines += ["u5,b1,remove_from_cart,1,1700000000"]                         # weight -2
    lines += ["u6,b2,add_to_cart,1,1700000000", "u6,b2,remove_from_cart,1,1700000001",
              "u6,b2,remove_from_cart,1,1700000002"]                         # 4 - 2 - 2 = 0
    lines += ["u7,b3,purchase,1,1700000000"]                                 # the one positive
    test = tmp_path / "test.csv"
    test.write_text("\n".join(lines) + "\n")
    table = evaluate_json("--interactions", train, "--test", str(test), "--algorithms", "popular")
    assert table["popular"]["users"] == 1


def test_engine_reads_the_built_in_event_weights(tmp_path):
    from recommender.conf import BUILTIN_EVENTS
    from recommender.engine.data import DEFAULT_EVENT_WEIGHTS, read_interactions_csv

    assert DEFAULT_EVENT_WEIGHTS == BUILTIN_EVENTS
    path = tmp_path / "ev.csv"
    path.write_text("user_id,item_id,event,value,timestamp\na,x,remove_from_cart,1,1\na,x,impression,,2\n"
                    "a,y,rating,3,3\n")
    assert read_interactions_csv(path)["weights"].tolist() == [-2.0, 0.0, 3.0]


def test_naive_timestamps_are_in_time_zone(tmp_path, settings, monkeypatch):
    from recommender.engine import data

    settings.TIME_ZONE = "Asia/Shanghai"  # UTC+8
    seen = []
    original = data.read_interactions_csv

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        seen.append(result["timestamps"])
        return result

    monkeypatch.setattr(data, "read_interactions_csv", spy)
    path = write_interactions(tmp_path / "events.csv")
    with open(path, "a") as fh:
        fh.write("u0,a9,view,,2020-09-13T20:26:40\n")  # 12:26:40 UTC
    evaluate_json("--interactions", path, "--algorithms", "popular")
    assert seen[0][-1] == 1_600_000_000.0


@pytest.mark.parametrize(("row", "words"), [
    ("u0,a1,rating,1e308,1600000000", "line 122: the value '1e308' is beyond"),
    ("u0,a1,view,,9999-12-31T23:59:59-14:00", "line 122: the timestamp"),
    ('u0,a1,view,,"1600000000', "line 122: a quoted field opened on this line is never closed"),
])
def test_bad_rows_name_their_line(tmp_path, row, words):
    path = write_interactions(tmp_path / "events.csv")
    with open(path, "a") as fh:
        fh.write(row + "\n")
    with pytest.raises(CommandError, match=words):
        evaluate_json("--interactions", path, "--algorithms", "popular")
