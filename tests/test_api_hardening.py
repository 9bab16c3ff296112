"""Bad requests get JSON client errors, outages a JSON 503; permissions, CSRF and sessions
of the API (docs/reliability.md lists the inputs and the answers)."""

import io
import re
import types
from unittest import mock

import pytest
from django.contrib.auth.models import Permission
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError, connection
from django.test import Client
from rest_framework.test import APIClient

from recommender.api.parsers import BoundedJSONParser, depth_of
from recommender.models import Interaction, TrainingRun

EVENTS = "/recommender/api/events/"
RUNS = "/recommender/api/training-runs/"


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="recommender",
                                                         codename__in=codenames))
    return type(user).objects.get(pk=user.pk)  # a fresh instance: permissions are cached per object


@pytest.fixture
def trainer(alice):
    return grant(alice, "view_trainingrun", "add_trainingrun")




def nested(shape, depth):
    if shape == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


# 1. Deeply nested JSON ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("shape", ["list", "object"])
@pytest.mark.parametrize("depth", [100_000, 900, 33])
@pytest.mark.parametrize("url", [EVENTS, RUNS])
def test_deeply_nested_json_is_a_400(trainer, catalog, shape, depth, url):
    api = APIClient()
    api.force_authenticate(trainer)
    response = api.post(url, nested(shape, depth), content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "nested" in response.json()["detail"]
    assert not Interaction.objects.exists() and not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_json_at_the_depth_limit_is_parsed(alice, catalog, settings):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "API_MAX_JSON_DEPTH": 3}
    api = APIClient()
    api.force_authenticate(alice)
    batch = {"events": [{"item": catalog[0].pk, "event": "view"}]}  # 3 levels
    assert api.post(EVENTS, batch, format="json").status_code == 201
    response = api.post(EVENTS, {"events": [{"item": [catalog[0].pk], "event": "view"}]}, format="json")
    assert response.status_code == 400 and "deeper than 3" in response.json()["detail"]


def test_depth_of():
    assert depth_of(1, 5) == 0
    assert depth_of({"events": [{"item": 1}, {"item": [1, [2]]}]}, 10) == 5
    deep = []
    for _ in range(5000):
        deep = [deep]
    assert depth_of(deep, 40) == 41  # stops past the limit, without recursion


# 2. Oversized bodies and database outages ------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("body, content_type", [
    ('[{"item": 1, "event": "view"}' + ', {"item": 1, "event": "view"}' * 100 + "]", "application/json"),
    ("item=1&event=view&context=" + "x" * 3000, "application/x-www-form-urlencoded"),
])
def test_oversized_body_is_a_json_413(alice, catalog, settings, body, content_type):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    api = APIClient()
    api.force_authenticate(alice)
    response = api.post(EVENTS, body, content_type=content_type)
    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is too large."}
    assert not Interaction.objects.exists()


@pytest.mark.django_db
def test_oversized_multipart_is_a_json_413(alice, catalog, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    api = APIClient()
    api.force_authenticate(alice)
    response = api.post(EVENTS, {"item": catalog[0].pk, "event": "view", "context": "x" * 3000}, format="multipart")
    assert response.status_code == 413 and response.json()["detail"] == "The request body is too large."


def test_parser_checks_the_length_itself(settings):
    """DRF before 3.17.2 hands the parser the stream, past Django's check in ``request.body``."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10
    request = types.SimpleNamespace(META={"CONTENT_LENGTH": "11"})
    with pytest.raises(RequestDataTooBig):
        BoundedJSONParser().parse(io.BytesIO(b'["abcdefgh"]'), parser_context={"request": request})
    request.META["CONTENT_LENGTH"] = "10"
    assert BoundedJSONParser().parse(io.BytesIO(b'["abcdefg"]'), parser_context={"request": request}) == ["abcdefg"]


def _database_down():
    def cursor(*args, **kwargs):
        raise OperationalError("could not connect to server: Connection refused")

    return mock.patch.object(connection, "cursor", cursor)


@pytest.mark.django_db
@pytest.mark.parametrize("method, url", [
    ("post", EVENTS), ("get", EVENTS), ("get", RUNS), ("post", RUNS), ("get", "/recommender/api/recommendations/"),
])
def test_database_outage_is_a_json_503(trainer, catalog, method, url, caplog):
    api = APIClient()
    api.force_authenticate(trainer)
    data = {"item": catalog[0].pk, "event": "view"} if url == EVENTS else {"algorithms": ["als"]}
    with _database_down():
        response = getattr(api, method)(url, data if method == "post" else None, format="json")
    assert response.status_code == 503
    assert response.json() == {"detail": "The service is temporarily unavailable; try again later."}
    assert any(r.name == "recommender.api" and r.exc_info for r in caplog.records)


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/recommender/api/recommendations/", "/recommender/api/trending/"])
def test_database_outage_for_a_logged_in_session(alice, catalog, url):
    """The fast path reads the session before DRF: a database outage there is DRF's JSON 503 too."""
    client = Client()
    client.force_login(alice)
    with _database_down():
        response = client.get(url, HTTP_ACCEPT="application/json")
    assert response.status_code == 503 and response["Content-Type"] == "application/json"


@pytest.mark.django_db
def test_database_outage_for_an_anonymous_visitor(catalog):
    client = Client()
    with _database_down():
        response = client.get("/recommender/api/recommendations/", HTTP_ACCEPT="application/json")
    assert response.status_code == 503 and response["Content-Type"] == "application/json"


# 4. Model permissions, not is_staff --------------------------------------------------------------


@pytest.mark.django_db
def test_is_staff_alone_gives_no_training_api(django_user_model):
    staff = django_user_model.objects.create_user("stan", "", "pw-stan-123", is_staff=True)
    run = TrainingRun.objects.create(algorithm="als")
    api = APIClient()
    api.force_authenticate(staff)
    assert api.get(RUNS).status_code == 403
    assert api.get(f"{RUNS}{run.pk}/").status_code == 403
    assert api.post(RUNS, {"algorithms": ["als"]}, format="json").status_code == 403


@pytest.mark.django_db
def test_view_permission_lists_and_add_permission_trains(alice, fake_services):
    run = TrainingRun.objects.create(algorithm="als")
    api = APIClient()
    reader = grant(alice, "view_trainingrun")
    api.force_authenticate(reader)
    assert api.get(RUNS).json()["count"] == 1 and api.get(f"{RUNS}{run.pk}/").status_code == 200
    assert api.post(RUNS, {"algorithms": ["als"]}, format="json").status_code == 403
    assert fake_services == []
    api.force_authenticate(grant(alice, "add_trainingrun"))
    assert api.post(RUNS, {"algorithms": ["als"]}, format="json").status_code == 202
    assert fake_services == [(["als"], "alice")]


@pytest.mark.django_db
def test_other_users_recommendations_need_view_interaction(alice, bob, django_user_model):
    url = "/recommender/api/recommendations/"
    staff = django_user_model.objects.create_user("stan", "", "pw-stan-123", is_staff=True)
    api = APIClient()
    api.force_authenticate(staff)
    response = api.get(url, {"user": alice.pk})
    assert response.status_code == 403 and "recommender.view_interaction" in response.json()["detail"]
    api.force_authenticate(grant(bob, "view_interaction"))  # not staff: the permission decides
    assert api.get(url, {"user": alice.pk}).status_code == 200


# 6-8. Anonymous events: a session started by the page, and the CSRF token --------------------------------


def _script_token(html):
    return re.search(r'<script src="[^"]*track\.js" data-endpoint="[^"]*" data-csrf="([^"]*)"', html)[1]


@pytest.mark.django_db
def test_posts_without_a_session_create_no_session_rows(catalog):
    client = APIClient()
    for _ in range(3):
        client.cookies.clear()
        response = client.post(EVENTS, {"item": catalog[0].pk, "event": "view"}, format="json")
        assert response.status_code == 403 and response.json()["detail"].startswith("Anonymous events are recorded")
    assert Session.objects.count() == 0 and not Interaction.objects.exists()


@pytest.mark.django_db
def test_first_page_starts_one_session_for_all_its_events(catalog):
    client = Client(enforce_csrf_checks=True)
    html = client.get(f"/product/{catalog[0].pk}/").content.decode()
    assert Session.objects.count() == 1
    session_key = client.cookies["sessionid"].value
    token = _script_token(html)
    # track.js sends the views and the impressions at once: both find the page's session
    for event in ("view", "impression"):
        response = client.post(EVENTS, {"item": catalog[0].pk, "event": event}, content_type="application/json",
                               HTTP_X_CSRFTOKEN=token)
        assert response.status_code == 201, response.content
    assert set(Interaction.objects.values_list("session_key", flat=True)) == {session_key}
    assert Session.objects.count() == 1
    # the next page of the same visitor writes no session
    with mock.patch.object(Session.objects, "create") as create:
        client.get("/")
    assert not create.called and Session.objects.count() == 1


@pytest.mark.django_db
def test_logged_in_pages_start_no_anonymous_session(catalog, alice):
    client = Client()
    client.force_login(alice)
    client.get("/")
    assert client.session.get("_recommender_anon") is None


@pytest.mark.django_db
def test_anonymous_events_need_the_csrf_token(catalog):
    client = Client(enforce_csrf_checks=True)
    html = client.get("/").content.decode()
    event = {"item": catalog[0].pk, "event": "view"}
    response = client.post(EVENTS, event, content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    response = client.post(EVENTS, event, content_type="application/json", HTTP_X_CSRFTOKEN="x" * 32)
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert not Interaction.objects.exists()
    response = client.post(EVENTS, event, content_type="application/json", HTTP_X_CSRFTOKEN=_script_token(html))
    assert response.status_code == 201
    # reading one's history needs no token
    assert client.get(EVENTS).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/recommender/api/events/", "/recommender/api/recommendations/",
                                 "/recommender/api/trending/", "/recommender/api/training-runs/"])
def test_database_outage_with_database_sessions(alice, catalog, url, settings):
    """The session itself lives in the database that is down: still a JSON 503 on every endpoint."""
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    with _database_down():
        response = client.get(url, HTTP_ACCEPT="application/json")
    assert response.status_code == 503 and response["Content-Type"] == "application/json"
