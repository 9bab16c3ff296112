"""track(): one INSERT, anonymous sessions merged at login, deleted with the user."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse

import recommender
from recommender.models import Interaction
from recommender.tracking.events import TrackingError, track


@pytest.mark.django_db
def test_track_a_user_is_one_insert(catalog, alice):
    with CaptureQueriesContext(connection) as queries:
        row = recommender.track(alice, catalog[0], "view", context="product")
    assert len(queries) == 1 and queries[0]["sql"].upper().startswith("INSERT")
    stored = Interaction.objects.get(pk=row.pk)
    assert (stored.user, stored.item, stored.event, stored.context) == (alice, catalog[0], "view", "product")


@pytest.mark.django_db
def test_track_accepts_item_primary_key_and_value(catalog, alice):
    track(alice, catalog[1].pk, "purchase", value=3)
    assert Interaction.objects.get().value == 3.0


@pytest.mark.django_db
def test_track_rejects_unknown_event_and_missing_visitor(catalog, alice):
    with pytest.raises(TrackingError, match="Unknown event type 'like'"):
        track(alice, catalog[0], "like")
    with pytest.raises(TrackingError):
        track(None, catalog[0], "view")
    assert not Interaction.objects.exists()


@pytest.mark.django_db
def test_site_defined_event_type(catalog, alice):
    with override_settings(RECOMMENDER={"ITEM_MODEL": "shop.Product", "EVENT_WEIGHTS": {"wishlist": 3}}):
        track(alice, catalog[0], "wishlist")
    assert Interaction.objects.get().event == "wishlist"


@pytest.mark.django_db
def test_track_request_of_logged_in_user(rf, catalog, alice):
    request = rf.get("/")
    request.user = alice
    track(request, catalog[0], "click")
    assert Interaction.objects.get().user == alice


def _post_event(client, item, event="view"):
    url = reverse("recommender:events")
    return client.post(url, {"item": item.pk, "event": event}, content_type="application/json")


@pytest.mark.django_db
def test_anonymous_history_is_merged_at_login(client, catalog, alice):
    client.get("/")  # the page's {% recommender_script %} starts the session the events go to
    assert _post_event(client, catalog[0]).status_code == 201
    assert _post_event(client, catalog[1], "click").status_code == 201
    anonymous = Interaction.objects.filter(user__isnull=True)
    assert anonymous.count() == 2 and anonymous.first().session_key
    assert client.login(username="alice", password="pw-alice-123")
    assert set(Interaction.objects.values_list("user__username", flat=True)) == {"alice"}
    # later anonymous rows of another visitor are untouched
    other = client.__class__()
    other.get("/")
    _post_event(other, catalog[2])
    assert Interaction.objects.filter(user__isnull=True).count() == 1


@pytest.mark.django_db
def test_anonymous_tracking_can_be_switched_off(client, catalog):
    with override_settings(RECOMMENDER={"ITEM_MODEL": "shop.Product", "TRACK_ANONYMOUS": False}):
        response = _post_event(client, catalog[0])
    assert response.status_code == 403
    assert not Interaction.objects.exists()


@pytest.mark.django_db
def test_deleting_a_user_deletes_their_interactions(catalog, alice, bob):
    track(alice, catalog[0], "view")
    track(bob, catalog[0], "view")
    alice.delete()
    assert list(Interaction.objects.values_list("user__username", flat=True)) == ["bob"]
