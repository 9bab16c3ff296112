"""The API answers what its OpenAPI schema says: schemathesis calls every operation of the schema
served at ``/api/schema/`` with generated valid (positive) data and validates each response.

Checks: the status code is documented, the content type is the documented one, the body
validates against the documented schema, and no response is a server error. Run once as a
logged-in user holding the API's model permissions and once as an anonymous visitor with a
session (as a page of the shop starts it) and the CSRF token.
"""

import os
import subprocess
import sys
from datetime import timedelta
from importlib import import_module
from unittest import mock

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import OperationalError, close_old_connections, connection
from django.utils import timezone
from django.utils.crypto import get_random_string
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from recommender.models import Interaction, TrainingRun
from recommender.serving import published
from tests.conftest import ROOT

#: Generated examples per operation and visitor; with schemathesis's coverage cases the 18 tests
#: make about 850 calls (docs/api.md has the times).
MAX_EXAMPLES = 25
#: The examples of one operation share the test's data (what POSTs add stays for the next example).
SHARED_DATA = hypothesis_settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def api_data(catalog, django_user_model):
    """Users, a history, published lists and training runs, so that most calls find something."""
    cache.clear()
    tess = django_user_model.objects.create_user("tess", "tess@example.com", "pw-tess-123")
    tess.user_permissions.set(Permission.objects.filter(
        content_type__app_label="recommender",
        codename__in=["view_trainingrun", "add_trainingrun", "view_interaction"]))
    other = django_user_model.objects.create_user("otto", "otto@example.com", "pw-otto-123")
    mug, blue, bag, _retired = catalog
    now = timezone.now()
    Interaction.objects.bulk_create([
        Interaction(user=user, item=item, event=event, timestamp=now - timedelta(minutes=i))
        for i, (user, item, event) in enumerate([(tess, mug, "view"), (tess, bag, "purchase"),
                                                 (other, blue, "view"), (other, mug, "add_to_cart")])
    ])
    published.publish("similar", "itemknn", {mug.pk: [[blue.pk, 0.9, None], [bag.pk, 0.2, None]]})
    published.publish("bought_together", "cooccurrence", {mug.pk: [[bag.pk, 0.7, None]]})
    published.publish("trending", "trending", {0: [[bag.pk, 3.0, None], [mug.pk, 2.0, None]]})
    published.publish("for_user", "hybrid", {tess.pk: [[blue.pk, 0.8, mug.pk]],
                                            other.pk: [[bag.pk, 0.5, blue.pk]]})
    runs = [TrainingRun.objects.create(algorithm="popular", params={}, status="succeeded", metrics={"ndcg@10": 0.1}),
            TrainingRun.objects.create(algorithm="itemknn", params={}, status="failed", error="boom")]
    KNOWN.update(items=[p.pk for p in catalog], runs=[run.pk for run in runs], users=[tess.pk, other.pk],
                 categories=sorted({str(p.category_id) for p in catalog}))
    return {"user": tess, "other": other}


#: What exists in the current test's data (filled by ``api_data``), drawn by the hooks below.
KNOWN = {"items": [], "runs": [], "categories": [], "users": []}
#: Algorithms drawn for queries and training requests (not two_tower: it would import TensorFlow).
ALGORITHMS = ["popular", "trending", "itemknn", "cooccurrence", "hybrid"]
_PATH_IDS = {"/recommender/api/items/{id}/similar/": "items",
             "/recommender/api/items/{id}/bought-together/": "items",
             "/recommender/api/training-runs/{id}/": "runs"}
_LISTS = ("/recommender/api/recommendations/", "/recommender/api/items/{id}/similar/",
          "/recommender/api/items/{id}/bought-together/", "/recommender/api/trending/")


def _known(kind):
    """One of the ``kind`` that exist, drawn when the example is made (after ``api_data`` ran)."""
    return st.integers(0, 99).map(lambda i: KNOWN[kind][i % len(KNOWN[kind])])


def _valid_query(path):
    optional = {"limit": st.integers(1, 20), "offset": st.integers(0, 30), "algorithm": st.sampled_from(ALGORITHMS),
                "category": _known("categories"), "exclude": _known("items").map(str)}
    if path == "/recommender/api/recommendations/":
        optional["user"] = _known("users")
    return st.fixed_dictionaries({}, optional=optional)


def _load_schema():
    """The schema as ``/api/schema/`` serves it (no database access), called in-process.

    Generated data is mostly refused (an unknown algorithm, an item that does not exist):
    the hooks mix in valid values of the test's data, so that the success answers are
    checked as often as the errors.
    """
    loaded = schemathesis.openapi.from_wsgi("/api/schema/?format=json", WSGIHandler())
    loaded.config.generation.update(modes=[GenerationMode.POSITIVE], max_examples=MAX_EXAMPLES,
                                    deterministic=True)

    @loaded.hook
    def before_generate_path_parameters(context, strategy):
        kind = _PATH_IDS.get(context.operation.path)
        if kind is None:
            return strategy
        convert = str if kind == "items" else int
        return st.one_of(strategy, _known(kind).map(lambda pk: {"id": convert(pk)}))

    @loaded.hook
    def before_generate_query(context, strategy):
        if context.operation.path not in _LISTS:
            return strategy
        return st.one_of(strategy, _valid_query(context.operation.path))

    @loaded.hook
    def before_generate_body(context, strategy):
        operation = context.operation
        if operation.method.upper() != "POST":
            return strategy
        if operation.path == "/recommender/api/events/":
            # one event: valid for the JSON, form and multipart bodies alike
            valid = st.fixed_dictionaries({"item": _known("items").map(str),
                                           "event": st.sampled_from(["view", "click", "impression"])},
                                          optional={"context": st.sampled_from(["home", "similar"])})
        else:
            valid = st.lists(st.sampled_from(ALGORITHMS), min_size=1, max_size=3).map(
                lambda names: {"algorithms": names})
        return st.one_of(strategy, valid)

    return loaded


schema = _load_schema()


@pytest.fixture
def wsgi_calls():
    """Requests made through the WSGI handler keep the test's connection open (its transaction)."""
    # Django's test client does the same.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
    cache.clear()


def _session_cookies(user=None):
    """Cookies of a visitor whose session a page started, with a CSRF token; and its header."""
    store = import_module(django_settings.SESSION_ENGINE).SessionStore()
    if user is not None:
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()
    token = get_random_string(32)  # a CSRF secret: 32 letters and digits
    cookies = {django_settings.SESSION_COOKIE_NAME: store.session_key, django_settings.CSRF_COOKIE_NAME: token}
    return cookies, {"X-CSRFToken": token}


@schema.parametrize()
@SHARED_DATA
def test_logged_in_calls_match_the_schema(case, api_data, wsgi_calls):
    cookies, headers = _session_cookies(api_data["user"])
    case.call_and_validate(cookies=cookies, headers=headers, checks=CHECKS)


@schema.parametrize()
@SHARED_DATA
def test_anonymous_calls_match_the_schema(case, api_data, wsgi_calls):
    cookies, headers = _session_cookies()
    case.call_and_validate(cookies=cookies, headers=headers, checks=CHECKS)


# The answers generated data rarely or never gets: throttled, body too large, database down.

_OPERATIONS = ["GET /recommender/api/events/", "POST /recommender/api/events/",
               "GET /recommender/api/recommendations/", "GET /recommender/api/items/{id}/similar/",
               "GET /recommender/api/items/{id}/bought-together/", "GET /recommender/api/trending/",
               "GET /recommender/api/training-runs/", "POST /recommender/api/training-runs/",
               "GET /recommender/api/training-runs/{id}/"]
_THROTTLED = _OPERATIONS[:6]


def _request(label, api_data, context_length=4, app=None, checks=CHECKS, anonymous=False):
    """A valid request to the operation ``label`` by the logged-in user (or an anonymous visitor
    with a session): ``call()`` makes it (to ``app``, a WSGI handler made after a settings
    change that middleware reads) and validates the answer."""
    operation = schema.find_operation_by_label(label)
    kwargs = {}
    if "{id}" in label:
        kwargs["path_parameters"] = {"id": KNOWN["runs"][0] if "training" in label else str(KNOWN["items"][0])}
    if label == "POST /recommender/api/events/":
        kwargs.update(media_type="application/json",
                      body={"item": str(KNOWN["items"][0]), "event": "view", "context": "x" * context_length})
    elif label == "POST /recommender/api/training-runs/":
        kwargs.update(media_type="application/json", body={"algorithms": ["popular"] * context_length})
    case = operation.Case(**kwargs)
    cookies, headers = _session_cookies(None if anonymous else api_data["user"])
    extra = {"app": app} if app is not None else {}
    return lambda: case.call_and_validate(cookies=cookies, headers=headers, checks=checks, **extra)


def test_every_operation_of_the_schema_is_checked_here():
    assert sorted(result.ok().label for result in schema.get_all_operations()) == sorted(_OPERATIONS)


def test_no_view_argument_is_a_parameter():
    """``fastpath`` is what the fast path hands the DRF views, not a request parameter."""
    names = {parameter.name for result in schema.get_all_operations() for parameter in result.ok().iter_parameters()}
    assert "fastpath" not in names


@pytest.mark.parametrize("label", _THROTTLED)
def test_throttled_answers_match_the_schema(label, api_data, wsgi_calls, settings):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "THROTTLE_RATES": {
        "events_anon": "1/min", "events_user": "1/min",
        "recommendations_anon": "1/min", "recommendations_user": "1/min"}}
    call = _request(label, api_data)
    assert call().status_code < 300
    assert call().status_code == 429


@pytest.mark.parametrize("label", ["POST /recommender/api/events/", "POST /recommender/api/training-runs/"])
def test_too_large_answers_match_the_schema(label, api_data, wsgi_calls, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    assert _request(label, api_data, context_length=2000)().status_code == 413


@pytest.mark.parametrize("label", _OPERATIONS[:2])
def test_anonymous_events_refused_match_the_schema(label, api_data, wsgi_calls, settings):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "TRACK_ANONYMOUS": False}
    assert _request(label, api_data, anonymous=True)().status_code == 403


@pytest.mark.parametrize("label", _OPERATIONS)
def test_database_outage_answers_match_the_schema(label, api_data, wsgi_calls, settings):
    # Sessions in the cache: with them in the database Django's session middleware fails first
    # (HTML 500), outside the API (docs/reliability.md).
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"

    def cursor(*args, **kwargs):
        raise OperationalError("could not connect to server: Connection refused")

    # the 503 is the documented answer: every check but not_a_server_error
    call = _request(label, api_data, app=WSGIHandler(), checks=CHECKS[1:])
    with mock.patch.object(connection, "cursor", cursor):
        assert call().status_code == 503


_WITHOUT_SPECTACULAR = """
import sys
sys.modules["drf_spectacular"] = None  # any import of it raises ImportError
import django
django.setup()
from django.core.management import call_command
from django.test import Client
call_command("migrate", verbosity=0)
from recommender.api import schema
assert schema.OpenApiSerializerFieldExtension is None
client = Client()
print(client.get("/recommender/api/trending/", HTTP_ACCEPT="application/json").status_code,
      client.post("/recommender/api/events/", {}, content_type="application/json").status_code,
      client.get("/recommender/api/training-runs/").status_code)
"""


def test_the_api_works_without_drf_spectacular():
    """The schema is optional: without drf-spectacular the documentation is a no-op."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.standalone.settings")
    result = subprocess.run([sys.executable, "-c", _WITHOUT_SPECTACULAR], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # trending for anyone; an empty event is refused; runs need a permission
    assert result.stdout.split() == ["200", "400", "403"]
