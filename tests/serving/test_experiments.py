"""Serving honours experiments: the block shows the visitor's variant, a 'no block' control
shows nothing, the exposure is recorded once, and the variant is kept across login."""

import pytest
from django.db import connection
from django.template import Context, Template
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext

from recommender.analytics import experiments
from recommender.models import Experiment, Exposure, Variant
from tests.serving.conftest import ranked

pytestmark = pytest.mark.django_db

TAG = Template("{% load recommender_tags %}{% recommended_for_you n=3 cache=False %}")


@pytest.fixture(autouse=True)
def fresh_process_state():
    experiments._running.clear()
    experiments._recorded.clear()
    yield
    experiments._running.clear()


def _experiment(shares):
    experiment = Experiment.objects.create(name="fy", blocks=["recommended_for_you"])
    for name, algorithm, share in shares:
        Variant.objects.create(experiment=experiment, name=name, algorithm=algorithm, share=share)
    experiments.start(experiment)
    return experiment


def _render(user, session_key):
    class Session(dict):
        pass

    request = RequestFactory().get("/")
    request.user = user
    request.session = Session()
    request.session.session_key = session_key
    return TAG.render(Context({"request": request}))


def _users_in(variant, experiment, django_user_model, wanted=2):
    spec = experiments.load_running()["recommended_for_you"]
    found = []
    for i in range(200):
        if experiments.variant_for(spec, f"u:{i + 1000}").name == variant:
            found.append(django_user_model.objects.create_user(f"v{i}", pk=i + 1000))
        if len(found) == wanted:
            return found
    raise AssertionError("no user in the variant")


def test_the_block_shows_each_visitors_variant(shelf, publish, django_user_model):
    experiment = _experiment([("hybrid", "hybrid", 0.5), ("itemknn", "itemknn", 0.5)])
    a = _users_in("hybrid", experiment, django_user_model)[0]
    b = _users_in("itemknn", experiment, django_user_model)[0]
    for user in (a, b):
        publish("for_user", "hybrid", {user: ranked(shelf[4:6])})
        publish("for_user", "itemknn", {user: ranked(shelf[8:10])})
    assert "Mug 4" in _render(a, "") and "Bag 8" not in _render(a, "")
    assert "Bag 8" in _render(b, "") and "Mug 4" not in _render(b, "")
    assert set(Exposure.objects.values_list("user__username", "variant")) == {
        (a.username, "hybrid"), (b.username, "itemknn")}


def test_a_no_block_control_renders_nothing_and_counts_the_exposure(shelf, publish, django_user_model):
    experiment = _experiment([("control", "", 0.5), ("hybrid", "hybrid", 0.5)])
    user = _users_in("control", experiment, django_user_model)[0]
    publish("for_user", "hybrid", {user: ranked(shelf[4:6])})
    assert _render(user, "").strip() == ""
    assert Exposure.objects.get().variant == "control"


def test_no_query_once_warm_and_one_insert_per_new_exposure(shelf, publish, django_user_model):
    experiment = _experiment([("hybrid", "hybrid", 0.5), ("itemknn", "itemknn", 0.5)])
    user = _users_in("hybrid", experiment, django_user_model)[0]
    publish("for_user", "hybrid", {user: ranked(shelf[4:6])})
    _render(user, "")
    with CaptureQueriesContext(connection) as queries:
        _render(user, "")
    assert not [q for q in queries if "recommender_experiment" in q["sql"] or "recommender_exposure" in q["sql"]
                or "recommender_variant" in q["sql"]]


def test_an_explicit_algorithm_is_not_experimented_on(shelf, publish, django_user_model):
    experiment = _experiment([("control", "", 0.5), ("hybrid", "hybrid", 0.5)])
    user = _users_in("control", experiment, django_user_model)[0]
    publish("for_user", "itemknn", {user: ranked(shelf[8:10])})
    tag = Template("{% load recommender_tags %}{% recommended_for_you n=3 algorithm='itemknn' cache=False %}")
    request = RequestFactory().get("/")
    request.user, request.session = user, {}
    assert "Bag 8" in tag.render(Context({"request": request}))
    assert not Exposure.objects.exists()


def test_the_variant_is_kept_across_login(shelf, publish, django_user_model):
    _experiment([("control", "", 0.5), ("hybrid", "hybrid", 0.5)])
    client = Client()
    client.get("/")  # the first page's script tag starts the session (its blocks ran before it)
    assert not Exposure.objects.exists()  # no session yet: not in the experiment
    client.get("/")
    exposure = Exposure.objects.get()
    assert exposure.user is None and exposure.key == f"s:{exposure.session_key}"
    user = django_user_model.objects.create_user("shopper", password="pw-123456")
    assert client.login(username="shopper", password="pw-123456")
    client.get("/")
    exposure.refresh_from_db()
    assert exposure.user == user and Exposure.objects.count() == 1  # same key, same variant


def test_a_cache_outage_never_breaks_a_block(shelf, publish, django_user_model, monkeypatch):
    """The running experiments' token is read through the serving's guarded cache access."""
    from recommender.serving import published

    _experiment([("hybrid", "hybrid", 0.5), ("itemknn", "itemknn", 0.5)])
    user = django_user_model.objects.create_user("shopper")
    publish("for_user", "hybrid", {user: ranked(shelf[4:6])})
    publish("for_user", "itemknn", {user: ranked(shelf[4:6])})
    experiments._running.clear()

    def down(*args, **kwargs):
        raise ConnectionError("cache down")

    cache = published.get_cache()
    monkeypatch.setattr(published, "CACHE_ERRORS", (ConnectionError,))
    for name in ("get", "get_many", "set", "set_many"):
        monkeypatch.setattr(cache, name, down)
    assert "Mug 4" in _render(user, "")  # served from the database, in the user's variant
    assert Exposure.objects.count() == 1


# The recommendation endpoints -------------------------------------------------------------

API = "/recommender/api/recommendations/"


def _api_items(response):
    assert response.status_code == 200, response.content[:300]
    return [r["item"] for r in response.json()["results"]]


def _sessions_in(experiment_block, variants):
    """``{variant: Client}``: an anonymous client with a session in each of ``variants``."""
    spec = experiments.load_running()[experiment_block]
    found = {}
    for _ in range(200):
        client = Client()
        key = client.session.session_key  # the test client saves a new session and sets its cookie
        name = experiments.variant_for(spec, f"s:{key}").name
        found.setdefault(name, client)
        if set(found) >= set(variants):
            return found
    raise AssertionError("no session in a variant")


def test_the_api_serves_each_visitors_variant(shelf, publish, django_user_model):
    experiment = _experiment([("hybrid", "hybrid", 0.5), ("itemknn", "itemknn", 0.5)])
    in_hybrid = _users_in("hybrid", experiment, django_user_model, wanted=1)[0]
    in_itemknn = _users_in("itemknn", experiment, django_user_model, wanted=1)[0]
    both = {in_hybrid: ranked(shelf[4:6]), in_itemknn: ranked(shelf[4:6])}
    publish("for_user", "hybrid", both)
    publish("for_user", "itemknn", {user: ranked(shelf[8:10]) for user in both})
    for user, expected in ((in_hybrid, shelf[4:6]), (in_itemknn, shelf[8:10])):
        client = Client()
        client.force_login(user)
        for _ in range(2):  # the second answer too (the fast path hands experimented requests to DRF)
            assert _api_items(client.get(API, {"limit": 2})) == [x.pk for x in expected]
        # a client that names the algorithm is not experimented on
        assert _api_items(client.get(API, {"limit": 2, "algorithm": "hybrid"})) == [shelf[4].pk, shelf[5].pk]
    assert sorted(Exposure.objects.values_list("user", "variant")) == sorted(
        [(in_hybrid.pk, "hybrid"), (in_itemknn.pk, "itemknn")])


def test_the_api_answers_a_no_block_control_with_an_empty_page(shelf, publish, django_user_model):
    experiment = _experiment([("control", "", 0.5), ("hybrid", "hybrid", 0.5)])
    user = _users_in("control", experiment, django_user_model, wanted=1)[0]
    publish("for_user", "hybrid", {user: ranked(shelf[4:6])})
    client = Client()
    client.force_login(user)
    response = client.get(API)
    assert response.status_code == 200 and response.json()["count"] == 0 and response.json()["results"] == []
    assert Exposure.objects.get().variant == "control"


def _served_queries(client, url, params):
    """The queries of one GET but the session's and the exposure's (none when the fast path
    answers it: DRF would at least read the user)."""
    with CaptureQueriesContext(connection) as queries:
        items = _api_items(client.get(url, params))
    return items, [q["sql"] for q in queries if "django_session" not in q["sql"]
                   and "recommender_exposure" not in q["sql"]]


def test_the_fast_path_serves_a_logged_in_visitors_variant(redis_cache, shelf, publish, django_user_model):
    experiment = _experiment([("hybrid", "hybrid", 0.5), ("itemknn", "itemknn", 0.5)])
    users = {name: _users_in(name, experiment, django_user_model, wanted=1)[0] for name in ("hybrid", "itemknn")}
    publish("for_user", "hybrid", {user: ranked(shelf[4:6]) for user in users.values()})
    publish("for_user", "itemknn", {user: ranked(shelf[8:10]) for user in users.values()})
    expected = {"hybrid": [shelf[4].pk, shelf[5].pk], "itemknn": [shelf[8].pk, shelf[9].pk]}
    for name, user in users.items():
        client = Client()
        client.force_login(user)
        assert _api_items(client.get(API, {"limit": 2})) == expected[name]  # DRF makes and stores it
        assert _served_queries(client, API, {"limit": 2}) == (expected[name], [])  # the stored one
    assert Exposure.objects.count() == 2
    # a process that has not recorded the exposure records it when it serves the stored response
    Exposure.objects.all().delete()
    experiments._recorded.clear()
    client = Client()
    client.force_login(users["itemknn"])
    assert _api_items(client.get(API, {"limit": 2})) == expected["itemknn"]
    assert Exposure.objects.get().variant == "itemknn"


def test_anonymous_visitors_of_one_variant_share_its_response(redis_cache, shelf, publish):
    """The fast path stores one similar-items response for every anonymous visitor; while an
    experiment governs the block, one for the visitors of each variant."""
    publish("similar", "itemknn", {shelf[0]: ranked(shelf[4:6])})
    publish("similar", "similar", {shelf[0]: ranked(shelf[8:10])})
    url = f"/recommender/api/items/{shelf[0].pk}/similar/"
    assert _api_items(Client().get(url, {"limit": 2})) == [shelf[4].pk, shelf[5].pk]  # stored for all
    experiment = Experiment.objects.create(name="sim", blocks=["similar_items"])
    Variant.objects.create(experiment=experiment, name="itemknn", algorithm="itemknn", share=0.5)
    Variant.objects.create(experiment=experiment, name="content", algorithm="similar", share=0.5)
    experiments.start(experiment)
    first, second = _sessions_in("similar_items", ["itemknn", "content"]), _sessions_in("similar_items",
                                                                                      ["itemknn", "content"])
    assert _api_items(first["content"].get(url, {"limit": 2})) == [shelf[8].pk, shelf[9].pk]
    assert _api_items(first["itemknn"].get(url, {"limit": 2})) == [shelf[4].pk, shelf[5].pk]
    # other visitors of each variant: the variant's stored response, no product query
    assert _served_queries(second["content"], url, {"limit": 2}) == ([shelf[8].pk, shelf[9].pk], [])
    assert _served_queries(second["itemknn"], url, {"limit": 2}) == ([shelf[4].pk, shelf[5].pk], [])
    assert Exposure.objects.count() == 4 and {e.variant for e in Exposure.objects.all()} == {"itemknn", "content"}
    assert _api_items(Client().get(url, {"limit": 2})) == [shelf[4].pk, shelf[5].pk]  # no session: not in it
    experiments.stop(experiment)
    assert _api_items(first["content"].get(url, {"limit": 2})) == [shelf[4].pk, shelf[5].pk]


def test_a_no_block_control_skips_the_fast_path(redis_cache, shelf, publish):
    publish("trending", "trending", {0: ranked(shelf[4:8])})
    assert _api_items(Client().get("/recommender/api/trending/", {"limit": 2})) == [shelf[4].pk, shelf[5].pk]
    experiment = Experiment.objects.create(name="tr", blocks=["trending"])
    Variant.objects.create(experiment=experiment, name="control", algorithm="", share=0.5)
    Variant.objects.create(experiment=experiment, name="trending", algorithm="trending", share=0.5)
    experiments.start(experiment)
    clients = _sessions_in("trending", ["control", "trending"])
    for _ in range(2):
        assert _api_items(clients["control"].get("/recommender/api/trending/", {"limit": 2})) == []
        assert _api_items(clients["trending"].get("/recommender/api/trending/", {"limit": 2})) == [
            shelf[4].pk, shelf[5].pk]


def test_the_api_keeps_the_variant_carried_across_login(redis_cache, shelf, publish, django_user_model):
    experiment = _experiment([("hybrid", "hybrid", 0.5), ("itemknn", "itemknn", 0.5)])
    user = _users_in("hybrid", experiment, django_user_model, wanted=1)[0]
    spec = experiments.load_running()["recommended_for_you"]
    carried = next(f"s:anon{i}" for i in range(200) if experiments.variant_for(spec, f"s:anon{i}").name == "itemknn")
    publish("for_user", "hybrid", {user: ranked(shelf[4:6])})
    publish("for_user", "itemknn", {user: ranked(shelf[8:10])})
    client = Client()
    client.force_login(user)
    session = client.session
    session[experiments.SESSION_KEY] = carried  # what carry_at_login keeps
    session.save()
    assert _api_items(client.get(API, {"limit": 2})) == [shelf[8].pk, shelf[9].pk]  # made by DRF
    assert _served_queries(client, API, {"limit": 2}) == ([shelf[8].pk, shelf[9].pk], [])  # the fast path
    assert list(Exposure.objects.values_list("key", "variant")) == [(carried, "itemknn")]
    other = Client()  # the same user in a later session: assigned by u:<pk>
    other.force_login(user)
    assert _api_items(other.get(API, {"limit": 2})) == [shelf[4].pk, shelf[5].pk]
