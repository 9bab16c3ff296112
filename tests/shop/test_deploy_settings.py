"""The demo's settings are safe by default: no debug pages, no public key, HTTPS, and a
``check --deploy`` whose every remaining warning is explained (docs/checks.md)."""

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "shopdemo" / "settings.py"
KEY = "a-deployment-key-" + "x" * 40
#: Variables the demo settings read; each test starts without them.
READ = ("DJANGO_", "REDIS_URL", "CELERY_BROKER_URL", "DATABASE_URL", "SHOPDEMO_")


@pytest.fixture
def demo_env(monkeypatch, tmp_path):
    """A clean environment for the demo settings, with ``var/`` in a temporary folder."""
    for name in list(os.environ):
        if name.startswith(READ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SHOPDEMO_VAR_DIR", str(tmp_path))
    return monkeypatch


@pytest.fixture
def load(demo_env):
    """``load(**env)``: the demo settings as a dict, evaluated with only ``env`` set."""

    def load(**env):
        for name in list(os.environ):
            if name.startswith(READ) and name != "SHOPDEMO_VAR_DIR":
                demo_env.delenv(name)
        for name, value in env.items():
            demo_env.setenv(name, value)
        return runpy.run_path(str(SETTINGS))

    return load


def manage(*args, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(READ)}
    clean.update(SHOPDEMO_VAR_DIR=os.environ["SHOPDEMO_VAR_DIR"], DJANGO_SETTINGS_MODULE="shopdemo.settings",
                 PYTHONPATH=str(ROOT), **env)
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=clean,
                            capture_output=True, text=True, timeout=120)
    return result.stdout + result.stderr


def reported_ids(output):
    return sorted(set(re.findall(r"\(([\w.]+\.[EW]\d+)\)", output)))


def test_debug_is_off_unless_asked_for(load):
    assert load(DJANGO_SECRET_KEY=KEY)["DEBUG"] is False
    assert load(DJANGO_DEBUG="1")["DEBUG"] is True  # what ./run demo sets


def test_debug_off_with_the_public_key_refuses_to_start(load):
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECRET_KEY is not set"):
        load(DJANGO_DEBUG="0")
    assert load(DJANGO_DEBUG="1")["SECRET_KEY"] == load(DJANGO_DEBUG="1")["PUBLIC_SECRET_KEY"]


def test_production_defaults_are_https_only(load):
    production = load(DJANGO_SECRET_KEY=KEY)
    assert production["SECURE_SSL_REDIRECT"] and production["SESSION_COOKIE_SECURE"]
    assert production["CSRF_COOKIE_SECURE"]
    local = load(DJANGO_DEBUG="1")
    assert not local["SECURE_SSL_REDIRECT"] and not local["SESSION_COOKIE_SECURE"]


def test_the_demo_passes_every_check(demo_env):
    # Without REDIS_URL the web server and the worker share no cache: a local-memory one
    # would be recommender.W050.
    output = manage("check", DJANGO_DEBUG="1")
    assert "System check identified no issues" in output, output


@pytest.mark.parametrize("env, expected", [
    ({"REDIS_URL": "redis://127.0.0.1:6379/6", "CELERY_BROKER_URL": "redis://127.0.0.1:6379/6"},
     ["security.W004"]),
    ({}, ["recommender.W051", "security.W004"]),
])
def test_check_deploy_warnings_are_all_explained(demo_env, env, expected):
    output = manage("check", "--deploy", DJANGO_SECRET_KEY=KEY, **env)
    found = reported_ids(output)
    assert found == expected, output
    settings_text = SETTINGS.read_text()
    docs = (ROOT / "docs" / "checks.md").read_text()
    for check_id in found:
        assert check_id in settings_text and check_id in docs


@pytest.mark.django_db
def test_the_session_engine_survives_a_cache_outage(load):
    from importlib import import_module

    engine = load(DJANGO_DEBUG="1")["SESSION_ENGINE"]
    down = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                        "LOCATION": "redis://127.0.0.1:1/0"}}  # nothing listens on port 1

    def session_round_trip(engine):
        store_class = import_module(engine).SessionStore
        session = store_class()
        session["cart"] = {"1": 2}
        session.create()
        session.save()
        assert store_class(session.session_key).load() == {"cart": {"1": 2}}
        session.delete()

    with override_settings(CACHES=down, SESSION_ENGINE=engine):
        session_round_trip(engine)
        # why not cached_db (the comment in shopdemo/settings.py): it raises with the cache down
        with pytest.raises(Exception, match="Connection refused|Error 111"):
            session_round_trip("django.contrib.sessions.backends.cached_db")
