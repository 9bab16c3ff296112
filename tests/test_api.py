"""The events endpoint: single and batch events, validation, CSRF, throttling, history."""

import pytest
from django.core.cache import cache
from django.test import override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from recommender.models import Interaction

URL = "/recommender/api/events/"


@pytest.fixture(autouse=True)
def _clear_throttle_cache():
    cache.clear()


@pytest.fixture
def api():
    return APIClient()


def visit(client):
    """Load a page with ``{% recommender_script %}``, which starts an anonymous visitor's session."""
    assert client.get("/").status_code == 200
    return client


def test_url_name():
    assert reverse("recommender:events") == URL


@pytest.mark.django_db
def test_single_event_for_logged_in_user(api, catalog, alice):
    api.force_authenticate(alice)
    response = api.post(URL, {"item": catalog[0].pk, "event": "view", "context": "product"}, format="json")
    assert response.status_code == 201, response.data
    assert response.data == {"created": 1}
    row = Interaction.objects.get()
    assert (row.user, row.item, row.context) == (alice, catalog[0], "product")


@pytest.mark.django_db
@pytest.mark.parametrize("wrap", [lambda e: e, lambda e: {"events": e}])
def test_batch_of_events(api, catalog, alice, wrap):
    api.force_authenticate(alice)
    events = [{"item": p.pk, "event": "view"} for p in catalog[:3]] + [
        {"item": catalog[0].pk, "event": "rating", "value": 4.5}]
    response = api.post(URL, wrap(events), format="json")
    assert response.status_code == 201
    assert Interaction.objects.filter(user=alice).count() == 4
    assert Interaction.objects.get(event="rating").value == 4.5


@pytest.mark.django_db
def test_invalid_batch_stores_nothing_and_names_fields(api, catalog, alice):
    api.force_authenticate(alice)
    events = [
        {"item": catalog[0].pk, "event": "view"},
        {"item": catalog[1].pk, "event": "teleport"},
        {"item": 999999, "event": "view"},
        {"event": "view", "value": "much"},
    ]
    response = api.post(URL, events, format="json")
    assert response.status_code == 400
    errors = response.data["events"]
    assert errors[0] == {}
    assert "teleport" in str(errors[1]["event"][0])
    assert set(errors[3]) == {"item", "value"}
    assert not Interaction.objects.exists()
    # the unknown item is reported once the rest of the batch is valid
    response = api.post(URL, [events[0], events[2]], format="json")
    assert response.status_code == 400
    assert "999999" in str(response.data["events"][1]["item"][0])
    assert not Interaction.objects.exists()


@pytest.mark.django_db
def test_single_invalid_event_has_field_errors(api, catalog, alice):
    api.force_authenticate(alice)
    response = api.post(URL, {"item": "not-a-number", "event": "view"}, format="json")
    assert response.status_code == 400
    assert "item" in response.data


@pytest.mark.django_db
def test_batch_limit(api, catalog, alice):
    api.force_authenticate(alice)
    with override_settings(RECOMMENDER={"ITEM_MODEL": "shop.Product", "API_MAX_BATCH": 3}):
        response = api.post(URL, [{"item": catalog[0].pk, "event": "view"}] * 4, format="json")
    assert response.status_code == 400
    assert "At most 3" in str(response.data["events"][0])
    response = api.post(URL, [], format="json")
    assert response.status_code == 400


@pytest.mark.django_db
def test_session_user_needs_csrf_token(catalog, alice):
    api = APIClient(enforce_csrf_checks=True)
    api.login(username="alice", password="pw-alice-123")
    response = api.post(URL, {"item": catalog[0].pk, "event": "view"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in str(response.data["detail"])
    assert not Interaction.objects.exists()


@pytest.mark.django_db
def test_anonymous_events_are_throttled(api, catalog):
    rates = {"events_anon": "3/min", "events_user": "600/min"}
    visit(api)
    with override_settings(RECOMMENDER={"ITEM_MODEL": "shop.Product", "THROTTLE_RATES": rates}):
        codes = [api.post(URL, {"item": catalog[0].pk, "event": "view"}, format="json").status_code
                 for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    assert Interaction.objects.count() == 3


@pytest.mark.django_db
def test_history_shows_only_own_rows(api, catalog, alice, bob):
    from recommender import track

    track(alice, catalog[0], "view")
    track(alice, catalog[1], "purchase", value=2)
    track(bob, catalog[2], "view")
    api.force_authenticate(alice)
    response = api.get(URL)
    assert response.status_code == 200
    rows = response.data["results"]
    assert [r["item_title"] for r in rows] == ["Blue Polka Mug", "Red Spotty Mug"]
    api.force_authenticate(bob)
    assert [r["item"] for r in api.get(URL).data["results"]] == [catalog[2].pk]


@pytest.mark.django_db
def test_anonymous_history_is_the_sessions_own(api, catalog, alice):
    from recommender import track

    track(alice, catalog[0], "view")
    assert api.get(URL).data["results"] == []
    visit(api)
    api.post(URL, {"item": catalog[1].pk, "event": "view"}, format="json")
    assert [r["item"] for r in api.get(URL).data["results"]] == [catalog[1].pk]
