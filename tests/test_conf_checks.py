"""Settings are read lazily and checked with ids and hints (docs/checks.md)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from recommender.checks import check_deploy_cache, check_settings
from recommender.conf import BUILTIN_EVENTS, rec_settings

ROOT = Path(__file__).resolve().parent.parent
BASE = {"ITEM_MODEL": "shop.Product"}
LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
DUMMY = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
REDIS = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}}
FAST_REDIS = {"default": {**REDIS["default"], "BACKEND": "recommender.fastpath.redis_cache.RedisCache"}}


def ids(django_settings=None, **recommender):
    # Eager tasks: no recommender.W050 about the test settings' local-memory cache.
    django_settings = {"CELERY_TASK_ALWAYS_EAGER": True, **(django_settings or {})}
    with override_settings(RECOMMENDER={**BASE, **recommender}, **django_settings):
        return sorted(e.id for e in check_settings())


def test_test_settings_pass_all_checks_but_the_shared_cache_warning():
    # tests/settings.py keeps the demo's Celery broker but a local-memory cache; the worker
    # tests read what workers publish from the database. The demo's own settings pass
    # every check (tests/shop/test_deploy_settings.py).
    assert [e.id for e in run_checks() if e.id.startswith("recommender")] == ["recommender.W050"]


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
    # ITEM_FIELDS values of the wrong type or on the wrong kind of field
    ({"ITEM_FIELDS": {"text": "description"}}, "recommender.E007"),  # would be read letter by letter
    ({"ITEM_FIELDS": {"title": ["title"]}}, "recommender.E007"),
    ({"ITEM_FIELDS": {"title": "category"}}, "recommender.E008"),  # a ForeignKey
    ({"ITEM_FIELDS": {"price": "category"}}, "recommender.E008"),
    ({"ITEM_FIELDS": {"text": ["description", "category"]}}, "recommender.E008"),
    ({"ITEM_FIELDS": {"available": "title"}}, "recommender.E009"),
    # unknown names
    ({"EXCLUDE_EVENTS": ["purchased"]}, "recommender.E013"),
    ({"EXCLUDE_EVENTS": "purchase"}, "recommender.E013"),
    ({"DEFAULT_ALGORITHM": "hybird"}, "recommender.E040"),
    ({"SIMILAR_ALGORITHM": "knn"}, "recommender.E040"),
    ({"BOUGHT_TOGETHER_ALGORITHM": None}, "recommender.E040"),
    ({"TRENDING_ALGORITHM": "hot"}, "recommender.E040"),
    ({"POPULAR_ALGORITHM": "top"}, "recommender.E040"),
    ({"TRAIN_ALGORITHMS": ["popular", "nope"]}, "recommender.E040"),
    ({"TRAIN_ALGORITHMS": "popular"}, "recommender.E040"),
    # out-of-range numbers
    ({"SERVED_LIST_LENGTH": 0}, "recommender.E020"),
    ({"REFRESH_CHUNK_SIZE": 0}, "recommender.E020"),
    ({"KEEP_VERSIONS": -1}, "recommender.E020"),
    ({"STALE_RUN_SECONDS": 0}, "recommender.E020"),
    ({"RETRAIN_AFTER_INTERACTIONS": 0}, "recommender.E020"),
    ({"CACHE_TIMEOUT": -1}, "recommender.E023"),
    ({"GATE_MARGIN": 2}, "recommender.E025"),
    ({"EVALUATION_FRACTION": 1.5}, "recommender.E025"),
    ({"EVALUATION_FRACTION": 0}, "recommender.E025"),
    ({"HALF_LIFE_DAYS": 0}, "recommender.E026"),
    ({"ARTIFACT_DIR": "relative/artifacts"}, "recommender.W031"),
    ({"CACHE_ALIAS": "recommender"}, "recommender.E050"),
    # a bad beat entry (today it empties the whole beat schedule, with only a logged traceback)
    ({"SCHEDULE": {"train_all": "61 * * * *"}}, "recommender.E060"),
    ({"SCHEDULE": {"train_all": "hourly"}}, "recommender.E060"),
    ({"SCHEDULE": {"train_all": 3}}, "recommender.E060"),
    ({"SCHEDULE": {"train_everything": "* * * * *"}}, "recommender.E060"),
])
def test_misconfiguration_is_reported(recommender, expected):
    assert expected in ids(**recommender)


@pytest.mark.parametrize("recommender", [
    {"ITEM_FIELDS": {"text": ["description"], "available": None, "price": None}},
    {"EXCLUDE_EVENTS": [], "EVENT_WEIGHTS": {"wishlist": 3}},
    {"EXCLUDE_EVENTS": ["purchase", "wishlist"], "EVENT_WEIGHTS": {"wishlist": 3}},
    {"TRAIN_ALGORITHMS": ["ease", "mine"], "DEFAULT_ALGORITHM": "mine",
     "ALGORITHMS": {"mine": {"class": "recommender.engine.ease.EASE"}}},
    {"KEEP_VERSIONS": 0, "GATE_MARGIN": 0, "RETRAIN_AFTER_INTERACTIONS": None, "CACHE_TIMEOUT": None},
    {"SCHEDULE": {"train_all": None, "refresh_all": "*/15 6-22 * * 1-5"}},
])
def test_valid_settings_pass(recommender):
    assert ids(**recommender) == []


def test_every_check_message_has_a_hint_or_is_self_explanatory():
    with override_settings(RECOMMENDER={"ITEM_MODEL": "shop.Product", "ITEM_FIELDS": {"title": "name"}}):
        (error,) = [e for e in check_settings() if e.id == "recommender.E005"]
    assert "name" in error.msg and "shop.Product" in error.msg and error.hint


def test_a_bad_crontab_names_the_entry_and_the_fault():
    with override_settings(RECOMMENDER={**BASE, "SCHEDULE": {"cleanup_artifacts": "61 * * * *"}}):
        (error,) = [e for e in check_settings() if e.id == "recommender.E060"]
    assert "'cleanup_artifacts'" in error.msg and "61" in error.msg and "minute hour" in error.hint


def test_artifacts_under_each_process_working_directory_are_reported():
    assert ids({"MEDIA_ROOT": ""}, ARTIFACT_DIR=None) == ["recommender.W031"]
    assert ids({"MEDIA_ROOT": "media"}, ARTIFACT_DIR=None) == ["recommender.W031"]
    assert ids({"MEDIA_ROOT": "/srv/media"}, ARTIFACT_DIR=None) == []


@pytest.mark.parametrize("caches, broker, eager, warned", [
    (LOCMEM, "redis://127.0.0.1:6379/0", False, True),
    (LOCMEM, "filesystem://", False, True),
    (LOCMEM, "redis://127.0.0.1:6379/0", True, False),  # tasks run in the same process
    (LOCMEM, "memory://", False, False),
    (LOCMEM, None, False, False),
    (DUMMY, "redis://127.0.0.1:6379/0", False, False),  # reads the table each time: never stale
    (REDIS, "redis://127.0.0.1:6379/0", False, False),
])
def test_a_process_local_cache_with_celery_workers_is_reported(caches, broker, eager, warned):
    django_settings = {"CACHES": caches, "CELERY_TASK_ALWAYS_EAGER": eager, "CELERY_BROKER_URL": broker}
    assert ("recommender.W050" in ids(django_settings)) is warned


@pytest.mark.parametrize("caches, warned", [(LOCMEM, True), (DUMMY, True), (REDIS, False), (FAST_REDIS, False)])
def test_deploy_check_wants_a_shared_cache(caches, warned):
    with override_settings(CACHES=caches, RECOMMENDER=BASE):
        assert ([e.id for e in check_deploy_cache()] == ["recommender.W051"]) is warned
        # only with --deploy
        assert "recommender.W051" not in [e.id for e in run_checks()]
        assert ("recommender.W051" in [e.id for e in run_checks(include_deployment_checks=True)]) is warned


@pytest.mark.parametrize("caches", [REDIS, FAST_REDIS])
def test_redis_cache_without_the_redis_package_is_an_error(caches, monkeypatch):
    assert "recommender.E052" not in ids({"CACHES": caches})
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis raises ImportError
    assert "recommender.E052" in ids({"CACHES": caches})


def test_a_cache_backend_that_cannot_be_imported_is_reported():
    caches = {**LOCMEM, "other": {"BACKEND": "no.such.Cache"}}
    assert "recommender.E051" in ids({"CACHES": caches})


def test_item_model_unset_gives_one_error(tmp_path):
    # A site without ITEM_MODEL: recommender.E001 alone, not also Django's fields.E300 and
    # fields.E307 about the foreign key's placeholder model.
    (tmp_path / "no_item_settings.py").write_text(
        "from tests.standalone.settings import *  # noqa\nRECOMMENDER = {}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "RECOMMENDER_"))}
    env.update(DJANGO_SETTINGS_MODULE="no_item_settings", PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert re.findall(r"\(([\w.]+\.[EW]\d+)\)", output) == ["recommender.E001"], output
    assert "identified 1 issue" in output


def test_interaction_search_works_without_an_email_field(monkeypatch, rf, admin_user, catalog):
    """A custom user model without ``email``: the admin search skips it (it was a FieldError, HTTP 500)."""
    from django.contrib import admin
    from django.contrib.auth.models import Group

    from recommender import track
    from recommender.admin import interactions
    from recommender.models import Interaction

    monkeypatch.setattr(Group, "USERNAME_FIELD", "name", raising=False)  # a "user" model with no email
    monkeypatch.setattr(interactions, "get_user_model", lambda: Group)
    track("anon-session-1", catalog[0], "view")
    request = rf.get("/admin/recommender/interaction/", {"q": "anon-session-1"})
    request.user = admin_user
    model_admin = admin.site._registry[Interaction]
    found, _ = model_admin.get_search_results(request, Interaction.objects.all(), "anon-session-1")
    assert [row.session_key for row in found] == ["anon-session-1"]


def test_docs_list_every_check_id():
    emitted = set(re.findall(r'id="(recommender\.[EW]\d+)"', (ROOT / "recommender" / "checks.py").read_text()))
    documented = set(re.findall(r"`(recommender\.[EW]\d+)`", (ROOT / "docs" / "checks.md").read_text()))
    assert len(emitted) > 30 and emitted == documented
