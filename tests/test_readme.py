"""The README's settings reference and check ids match the code."""

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_readme():
    from recommender.conf import DEFAULTS

    missing = [key for key in DEFAULTS if f"`{key}`" not in README]
    assert missing == []


def test_every_check_id_is_in_the_readme():
    from recommender import checks

    source = Path(checks.__file__).read_text()
    ids = set(re.findall(r"recommender\.([EW]\d{3})", source))
    assert ids
    assert sorted(i for i in ids if f"`{i}`" not in README) == []


def test_api_result_fields_match_the_readme():
    from recommender.api.serializers import recommendation_data

    line = re.search(r"\(each result:\s*(.*?)\)", README, re.S).group(1)
    documented = set(re.findall(r"[a-z_]+", line))

    class Item:
        pk = 1

    class Rec:
        item, title, price, url, image_url = Item(), "t", None, "/", ""
        score, reason, algorithm, because = 1, "r", "a", None

    fields = set(recommendation_data(Rec()))
    assert fields <= documented, fields - documented
