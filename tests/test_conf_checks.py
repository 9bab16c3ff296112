"""Settings are read lazily and checked with ids and hints."""

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from recommender.checks import check_settings
from recommender.conf import BUILTIN_EVENTS, rec_settings

BASE = {"ITEM_MODEL": "shop.Product"}


def ids(**recommender):
    with override_settings(RECOMMENDER={**BASE, **recommender}):
        return sorted(e.id for e in check_settings())


def test_demo_settings_pass_all_checks():
    assert [e for e in run_checks() if e.id.startswith("recommender")] == []


def test_defaults_are_merged_and_reloaded_on_override():
    assert rec_settings.API_MAX_BATCH == 500
    with override_settings(RECOMMENDER={**BASE, "API_MAX_BATCH": 7, "ITEM_FIELDS": {"title": "stock_code"}}):
        assert rec_settings.API_MAX_BATCH == 7
        # a partial ITEM_FIELDS keeps the other roles' defaults
        assert rec_settings.item_field("title") == "stock_code"
        assert rec_settings.item_field("price") == "price"
    assert rec_settings.API_MAX_BATCH == 500


def test_site_events_extend_builtins():
    with override_settings(RECOMMENDER={**BASE, "EVENT_WEIGHTS": {"wishlist": 3, "view": 0.5}}):
        weights = rec_settings.event_weights
    assert weights["wishlist"] == 3 and weights["view"] == 0.5
    assert set(BUILTIN_EVENTS) <= set(weights)


def test_unknown_setting_attribute_raises():
    with pytest.raises(AttributeError):
        rec_settings.NOT_A_SETTING  # noqa: B018


@pytest.mark.parametrize("recommender, expected", [
    ({"ITEM_MODEL": None}, "recommender.E001"),
    ({"ITEM_MODEL": "shop.Nope"}, "recommender.E002"),
    ({"ITEM_FIELDS": {"colour": "title"}}, "recommender.E004"),
    ({"ITEM_FIELDS": {"title": "name"}}, "recommender.E005"),
    ({"ITEM_FIELDS": {"text": ["description", "blurb"]}}, "recommender.E005"),
    ({"ITEM_FIELDS": {"external_id": "title"}}, "recommender.E006"),
    ({"EVENT_WEIGHTS": {"Wish List": 1}}, "recommender.E011"),
    ({"EVENT_WEIGHTS": {"wishlist": "high"}}, "recommender.E012"),
    ({"EVENT_WEIGHTS": {"wishlist": True}}, "recommender.E012"),
    ({"API_MAX_BATCH": 0}, "recommender.E020"),
    ({"THROTTLE_RATES": {"events_anon": "lots"}}, "recommender.E021"),
    ({"ANONYMOUS_RETENTION_DAYS": -1}, "recommender.E022"),
    ({"AUTH_CACHE_TIMEOUT": "5 min"}, "recommender.E023"),
    ({"BLOCK_CACHE_TIMEOUT": -1}, "recommender.E023"),
    ({"ITEM_CACHE_TIMEOUT": 1.5}, "recommender.E023"),
    ({"THROTTLE_SYNC_INTERVAL": "50ms"}, "recommender.E024"),
    ({"THROTTLE_SYNC_INTERVAL": 60}, "recommender.E024"),
    ({"ARTIFACT_DIR": __file__ + "/artifacts"}, "recommender.E030"),  # under a file
    ({"TYPO_KEY": 1}, "recommender.W001"),
])
def test_misconfiguration_is_reported(recommender, expected):
    assert expected in ids(**recommender)


def test_every_check_message_has_a_hint_or_is_self_explanatory():
    with override_settings(RECOMMENDER={"ITEM_MODEL": "shop.Product", "ITEM_FIELDS": {"title": "name"}}):
        (error,) = check_settings()
    assert "name" in error.msg and "shop.Product" in error.msg and error.hint
