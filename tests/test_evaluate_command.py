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
