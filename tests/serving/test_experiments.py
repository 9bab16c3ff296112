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
