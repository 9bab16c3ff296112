"""The recommendations endpoint checks the session against a cached auth record (recommender.fastpath.identity)."""

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from recommender.fastpath import identity
from recommender.serving import published
from tests.serving.conftest import ranked

pytestmark = pytest.mark.django_db
URL = "/recommender/api/recommendations/"


def _items(response):
    assert response.status_code == 200, response.content[:300]
    return [r["item"] for r in response.json()["results"]]


def _user_queries(queries):
    return [q for q in queries if '"auth_user"' in q["sql"]]


def _record(pk):
    cache, client = published.backend()
    return client.get(cache.make_key(identity.auth_key(pk)))


@pytest.fixture
def lists(shelf, alice, bob, publish):
    publish("for_user", "hybrid", {alice: ranked(shelf[4:8]), bob: ranked(shelf[8:12])})
    publish("trending", "trending", {0: ranked(shelf[0:3])})
    return shelf


def test_second_request_needs_no_user_query(redis_cache, lists, alice):
    client = Client()
    client.force_login(alice)
    first = client.get(URL, {"limit": 2})
    assert _items(first) == [lists[4].pk, lists[5].pk]
    assert _record(alice.pk) not in (None, b"-")  # written after Django resolved the user
    with CaptureQueriesContext(connection) as queries:
        second = client.get(URL, {"limit": 2})
    assert second.content == first.content
    assert _user_queries(queries) == []


def test_a_forged_claim_gets_nothing_of_the_user(redis_cache, lists, alice, bob):
    owner = Client()
    owner.force_login(alice)
    _items(owner.get(URL, {"limit": 2}))  # alice's record and response are stored
    _items(owner.get(URL, {"limit": 2}))
    # a session that names alice, with bob's (valid) hash: Django would flush it
    session = SessionStore()
    session[SESSION_KEY] = str(alice.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = bob.get_session_auth_hash()
    session.save()
    intruder = Client()
    intruder.cookies["sessionid"] = session.session_key
    items = _items(intruder.get(URL, {"limit": 2}))
    assert items == [lists[0].pk, lists[1].pk]  # the anonymous fallback (trending), not alice's list


def test_password_change_and_deactivation_take_effect_at_once(redis_cache, lists, alice):
    client = Client()
    client.force_login(alice)
    _items(client.get(URL, {"limit": 2}))
    assert _items(client.get(URL, {"limit": 2})) == [lists[4].pk, lists[5].pk]
    alice.set_password("a-new-secret-456")
    alice.save()
    assert _record(alice.pk) == b"-"  # a tombstone: no record is written for a minute
    assert _items(client.get(URL, {"limit": 2})) == [lists[0].pk, lists[1].pk]  # logged out
    assert _record(alice.pk) == b"-"

    client.force_login(alice)  # logging in saves last_login only: the record may come back
    assert _items(client.get(URL, {"limit": 2})) == [lists[4].pk, lists[5].pk]
    published.backend()[1].delete(published.backend()[0].make_key(identity.auth_key(alice.pk)))
    _items(client.get(URL, {"limit": 2}))
    assert _record(alice.pk) not in (None, b"-")
    alice.is_active = False
    alice.save()
    assert _items(client.get(URL, {"limit": 2})) == [lists[0].pk, lists[1].pk]


def test_staff_reading_another_user_still_goes_through_drf(redis_cache, lists, alice, staff):
    client = Client()
    client.force_login(alice)
    assert client.get(URL, {"user": staff.pk}).status_code == 403
    client.force_login(staff)
    assert _items(client.get(URL, {"user": alice.pk, "limit": 2})) == [lists[4].pk, lists[5].pk]


def test_the_record_can_be_turned_off(redis_cache, lists, alice, settings):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "AUTH_CACHE_TIMEOUT": None}
    client = Client()
    client.force_login(alice)
    _items(client.get(URL, {"limit": 2}))
    with CaptureQueriesContext(connection) as queries:
        assert _items(client.get(URL, {"limit": 2})) == [lists[4].pk, lists[5].pk]
    assert _record(alice.pk) is None
    assert _user_queries(queries)


def test_claim_reads_only_well_formed_sessions(rf, alice, settings):
    request = rf.get("/")
    request.session = SessionStore()
    assert identity.claim(request) is None
    request.session[SESSION_KEY] = str(alice.pk)
    request.session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    assert identity.claim(request) is None  # no hash
    request.session[HASH_SESSION_KEY] = alice.get_session_auth_hash()
    claim = identity.claim(request)
    assert claim.pk == alice.pk and claim.backend == "django.contrib.auth.backends.ModelBackend"
    assert identity.verify(claim, f"{claim.backend}\n{alice.get_session_auth_hash()}".encode())
    assert not identity.verify(claim, f"{claim.backend}\nwrong".encode())
    assert not identity.verify(claim, f"other.Backend\n{alice.get_session_auth_hash()}".encode())
    assert not identity.verify(claim, None) and not identity.verify(claim, b"-")
    request.session[BACKEND_SESSION_KEY] = "not.a.configured.Backend"
    assert identity.claim(request) is None
    request.session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    request.session[SESSION_KEY] = "not-a-number"
    assert identity.claim(request) is None
