"""The recommendation API: results, permissions, validation, pagination, items, trending, training runs."""


import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

import recommender
from recommender.models import TrainingRun
from tests.serving.conftest import ranked

pytestmark = pytest.mark.django_db
URL = "/recommender/api/recommendations/"


@pytest.fixture
def api():
    return APIClient()


def result_pks(response):
    return [r["item"] for r in response.json()["results"]]


def test_urls_in_the_namespace():
    from django.urls import reverse

    assert reverse("recommender:recommendations") == URL
    assert reverse("recommender:similar-items", args=[5]) == "/recommender/api/items/5/similar/"
    assert reverse("recommender:bought-together", args=[5]) == "/recommender/api/items/5/bought-together/"
    assert reverse("recommender:trending") == "/recommender/api/trending/"
    assert reverse("recommender:training-runs") == "/recommender/api/training-runs/"
    assert reverse("recommender:training-run", args=[3]) == "/recommender/api/training-runs/3/"


def test_user_gets_own_list(api, shelf, alice, publish):
    recommender.track(alice, shelf[0], "view")
    publish("for_user", "hybrid", {alice: [(shelf[4], 0.9, shelf[0]), (shelf[8], 0.5, None)]})
    api.force_login(alice)
    response = api.get(URL)
    assert response.status_code == 200
    data = response.json()
    assert data["count"] == 2 and data["next"] is None and data["previous"] is None
    assert data["results"][0] == {
        "item": shelf[4].pk, "title": "Mug 4", "price": "9.00", "url": f"/product/{shelf[4].pk}/",
        "image": "", "score": 0.9, "reason": "Because you viewed Red Spotty Mug", "algorithm": "hybrid",
        "because": shelf[0].pk,
    }
    assert data["results"][1]["because"] is None


def test_results_carry_the_item_image_url(api, shelf, alice, publish, settings):
    shelf[4].image.name = "products/mug-4.png"   # a stored file: the field gives its URL
    shelf[4].save()
    publish("for_user", "hybrid", {alice: ranked([shelf[4], shelf[8]])})
    api.force_login(alice)
    results = api.get(URL).json()["results"]
    assert [r["image"] for r in results] == ["/media/products/mug-4.png", ""]
    settings.RECOMMENDER = {**settings.RECOMMENDER,
                            "ITEM_FIELDS": {**settings.RECOMMENDER["ITEM_FIELDS"], "image": "title"}}
    shelf[4].save()   # a field holding a URL (here: any text) is used as it is
    assert api.get(URL).json()["results"][0]["image"] == "Mug 4"


def test_anonymous_gets_session_fallback(api, shelf, publish):
    publish("trending", "trending", {0: ranked([shelf[9], shelf[10]])})
    publish("similar", "itemknn", {shelf[0]: ranked(shelf[4:6])})
    response = api.get(URL)
    assert response.status_code == 200 and result_pks(response) == [shelf[9].pk, shelf[10].pk]
    assert response.json()["results"][0]["reason"] == "Trending now"
    api.get("/")  # the page's {% recommender_script %} starts the session the events go to
    assert api.post("/recommender/api/events/", {"item": shelf[0].pk, "event": "view"},
                    format="json").status_code == 201
    response = api.get(URL)
    assert result_pks(response)[:2] == [shelf[4].pk, shelf[5].pk]
    assert response.json()["results"][0]["reason"] == "Because you viewed Red Spotty Mug"


def test_other_users_recommendations(api, shelf, alice, bob, staff, publish):
    publish("for_user", "hybrid", {alice: ranked(shelf[4:6]), bob: ranked(shelf[8:10])})
    # anonymous and another user: 403
    assert api.get(URL, {"user": alice.pk}).status_code == 403
    api.force_login(bob)
    response = api.get(URL, {"user": alice.pk})
    assert response.status_code == 403 and "view_interaction" in response.json()["detail"]
    assert result_pks(api.get(URL, {"user": bob.pk})) == [shelf[8].pk, shelf[9].pk]
    # staff may read anyone's
    api.force_login(staff)
    assert result_pks(api.get(URL, {"user": alice.pk})) == [shelf[4].pk, shelf[5].pk]
    response = api.get(URL, {"user": 999999})
    assert response.status_code == 400 and "user" in response.json()


@pytest.mark.parametrize("params, field", [
    ({"limit": 0}, "limit"), ({"limit": 51}, "limit"), ({"n": "many"}, "n"), ({"offset": -1}, "offset"),
    ({"limit": 30, "offset": 30}, "offset"), ({"algorithm": "magic"}, "algorithm"),
    ({"category": 999999}, "category"), ({"category": "mugs"}, "category"), ({"exclude": "1,abc"}, "exclude"),
])
def test_bad_parameters_are_400_with_field_messages(api, shelf, alice, params, field):
    for logged_in in (False, True):
        if logged_in:
            api.force_login(alice)
        response = api.get(URL, params)
        assert response.status_code == 400, (params, response.content)
        assert field in response.json()
    response = api.get("/recommender/api/trending/", params)
    assert response.status_code == 400 and field in response.json()


def test_parameters(api, shelf, alice, publish):
    publish("for_user", "hybrid", {alice: ranked([shelf[0], shelf[4], shelf[8], shelf[9], shelf[5]])})
    publish("for_user", "als", {alice: ranked([shelf[10]])})
    api.force_login(alice)
    bags = shelf[8].category
    assert result_pks(api.get(URL, {"category": bags.pk})) == [shelf[8].pk, shelf[9].pk]
    assert result_pks(api.get(URL, {"exclude": f"{shelf[0].pk}, {shelf[8].pk}"})) == [
        shelf[4].pk, shelf[9].pk, shelf[5].pk]
    assert result_pks(api.get(URL, {"n": 2})) == [shelf[0].pk, shelf[4].pk]
    response = api.get(URL, {"algorithm": "als"})
    assert result_pks(response) == [shelf[10].pk] and response.json()["results"][0]["algorithm"] == "als"


def test_pagination(api, shelf, alice, publish):
    items = [p for p in shelf if p.is_active]
    publish("for_user", "hybrid", {alice: ranked(items)})
    api.force_login(alice)
    data = api.get(URL, {"limit": 4, "offset": 4}).json()
    assert data["count"] == len(items)
    assert [r["item"] for r in data["results"]] == [p.pk for p in items[4:8]]
    assert "offset=8" in data["next"] and "limit=4" in data["next"]
    assert "offset" not in data["previous"] and "limit=4" in data["previous"]
    last = api.get(data["next"]).json()
    assert [r["item"] for r in last["results"]] == [p.pk for p in items[8:]] and last["next"] is None


def test_similar_and_bought_together_endpoints(api, shelf, alice, publish):
    publish("similar", "itemknn", {shelf[0]: ranked([shelf[1], shelf[3], shelf[4]])})
    publish("bought_together", "cooccurrence", {shelf[0]: ranked([shelf[8], shelf[9]])})
    response = api.get(f"/recommender/api/items/{shelf[0].pk}/similar/")
    assert response.status_code == 200 and result_pks(response) == [shelf[1].pk, shelf[4].pk]
    assert response.json()["results"][0]["reason"] == "Similar to Red Spotty Mug"
    assert response.json()["results"][0]["because"] == shelf[0].pk
    response = api.get(f"/recommender/api/items/{shelf[0].pk}/bought-together/", {"limit": 1})
    assert result_pks(response) == [shelf[8].pk] and response.json()["count"] == 2
    # a logged-in user never sees what they bought
    recommender.track(alice, shelf[8], "purchase")
    api.force_login(alice)
    assert result_pks(api.get(f"/recommender/api/items/{shelf[0].pk}/bought-together/")) == [shelf[9].pk]
    assert api.get("/recommender/api/items/999999/similar/").status_code == 404
    assert api.get("/recommender/api/items/abc/bought-together/").status_code == 404


def test_trending_endpoint(api, shelf, publish):
    publish("trending", "trending", {0: ranked([shelf[0], shelf[8], shelf[3]])})
    publish("popular", "popular", {0: ranked([shelf[9]])})
    assert result_pks(api.get("/recommender/api/trending/")) == [shelf[0].pk, shelf[8].pk, shelf[9].pk]
    response = api.get("/recommender/api/trending/", {"category": shelf[8].category_id})
    assert result_pks(response) == [shelf[8].pk, shelf[9].pk]
    assert [r["reason"] for r in response.json()["results"]] == ["Trending now", "Popular in Bags"]


def test_empty_lists(api, shelf, alice):
    api.force_login(alice)
    assert api.get(URL).json() == {"count": 0, "next": None, "previous": None, "results": []}


def test_throttled_by_scope(api, shelf, alice, publish, settings):
    from recommender.conf import rec_settings

    publish("for_user", "hybrid", {alice: ranked(shelf[4:6])})
    settings.RECOMMENDER = {**settings.RECOMMENDER, "THROTTLE_RATES": {
        **rec_settings.THROTTLE_RATES, "recommendations_user": "3/min", "recommendations_anon": "2/min"}}
    cache.clear()
    api.force_login(alice)
    # the first builds the response, the next two are served pre-rendered: all count once
    assert [api.get(URL).status_code for _ in range(4)] == [200, 200, 200, 429]
    anonymous = APIClient()
    assert [anonymous.get("/recommender/api/trending/").status_code for _ in range(3)] == [200, 200, 429]


def test_unthrottled_without_a_rate(api, shelf, alice, publish, settings):
    publish("for_user", "hybrid", {alice: ranked(shelf[4:6])})
    settings.RECOMMENDER = {**settings.RECOMMENDER, "THROTTLE_RATES": {
        "recommendations_user": None, "recommendations_anon": None}}
    from recommender.api.throttling import RecommendationsAnonThrottle, RecommendationsUserThrottle

    assert RecommendationsUserThrottle().rate is None and RecommendationsAnonThrottle().rate is None
    api.force_login(alice)
    assert {api.get(URL).status_code for _ in range(5)} == {200}
    assert {APIClient().get(URL).status_code for _ in range(5)} == {200}


def test_browsable_api(api, shelf, alice, publish):
    publish("for_user", "hybrid", {alice: ranked(shelf[4:6])})
    api.force_login(alice)
    for _ in range(2):  # built, then pre-rendered
        response = api.get(URL, HTTP_ACCEPT="text/html")
        assert response.status_code == 200 and "text/html" in response["Content-Type"]
        assert "Mug 4" in response.content.decode()
    assert api.get("/recommender/api/trending/?format=api").status_code == 200


def test_openapi_schema_and_local_docs(api, staff):
    response = api.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ["/recommender/api/recommendations/", "/recommender/api/items/{id}/similar/",
                 "/recommender/api/items/{id}/bought-together/", "/recommender/api/trending/",
                 "/recommender/api/training-runs/", "/recommender/api/training-runs/{id}/"]:
        assert path in paths, sorted(paths)
    names = {p["name"] for p in paths["/recommender/api/recommendations/"]["get"]["parameters"]}
    assert {"limit", "offset", "algorithm", "category", "exclude", "user"} <= names
    html = api.get("/api/docs/").content.decode()
    assert "drf_spectacular_sidecar" in html and "cdn." not in html
    assert "drf_spectacular_sidecar" in api.get("/api/redoc/").content.decode()


# Training runs ----------------------------------------------------------------------------------


RUNS = "/recommender/api/training-runs/"


def test_training_runs_are_staff_only(api, alice):
    run = TrainingRun.objects.create(algorithm="als")
    assert api.get(RUNS).status_code == 403
    assert api.post(RUNS, {"algorithms": ["als"]}, format="json").status_code == 403
    api.force_login(alice)
    assert api.get(RUNS).status_code == 403
    assert api.get(f"{RUNS}{run.pk}/").status_code == 403
    assert api.post(RUNS, {"algorithms": ["als"]}, format="json").status_code == 403


def test_staff_lists_and_reads_runs(api, staff):
    als = TrainingRun.objects.create(algorithm="als", status="succeeded", metrics={"ndcg@10": 0.1})
    TrainingRun.objects.create(algorithm="ease")
    api.force_login(staff)
    data = api.get(RUNS).json()
    assert data["count"] == 2 and {r["algorithm"] for r in data["results"]} == {"als", "ease"}
    assert [r["id"] for r in api.get(RUNS, {"algorithm": "als"}).json()["results"]] == [als.pk]
    detail = api.get(f"{RUNS}{als.pk}/").json()
    assert detail["status"] == "succeeded" and detail["metrics"] == {"ndcg@10": 0.1}
    assert api.get(f"{RUNS}999999/").status_code == 404


def test_staff_starts_a_training(api, staff, fake_services):
    calls = fake_services
    api.force_login(staff)
    response = api.post(RUNS, {"algorithms": ["als", "itemknn", "als"]}, format="json")
    assert response.status_code == 202, response.content
    assert calls == [(["als", "itemknn"], "sam")]
    assert [r["algorithm"] for r in response.json()] == ["als", "itemknn"]
    for bad in [{"algorithms": ["magic"]}, {"algorithms": []}, {}, {"algorithms": "als"}]:
        response = api.post(RUNS, bad, format="json")
        assert response.status_code == 400 and "algorithms" in response.json(), bad
    assert len(calls) == 1


# Pre-rendered responses ------------------------------------------------------------------------


def test_second_request_is_served_without_the_database_work(api, shelf, alice, publish):
    publish("for_user", "hybrid", {alice: ranked(shelf[4:8])})
    api.force_login(alice)
    first = api.get(URL)
    with CaptureQueriesContext(connection) as queries:
        second = api.get(URL)
    assert second.json() == first.json()
    # only the session and the user: no recommendation query
    assert not [q for q in queries if "shop_product" in q["sql"] or "recommender_" in q["sql"]], queries


def test_prerendered_response_follows_changes(api, shelf, alice, publish):
    publish("for_user", "hybrid", {alice: ranked(shelf[4:8])})
    api.force_login(alice)
    assert result_pks(api.get(URL, {"limit": 2})) == [shelf[4].pk, shelf[5].pk]
    # a new list
    publish("for_user", "hybrid", {alice: ranked(shelf[8:12])})
    assert result_pks(api.get(URL, {"limit": 2})) == [shelf[8].pk, shelf[9].pk]
    # an item is withdrawn
    shelf[8].is_active = False
    shelf[8].save()
    assert result_pks(api.get(URL, {"limit": 2})) == [shelf[9].pk, shelf[10].pk]
    # the user buys one (through the events API: bulk insert, no post_save)
    assert api.post("/recommender/api/events/", [{"item": shelf[9].pk, "event": "purchase"}],
                    format="json").status_code == 201
    assert result_pks(api.get(URL, {"limit": 2})) == [shelf[10].pk, shelf[11].pk]
    # ... or through track() (post_save)
    recommender.track(alice, shelf[10], "purchase")
    assert result_pks(api.get(URL, {"limit": 2})) == [shelf[11].pk]


def test_cold_and_anonymous_responses_are_not_kept(api, shelf, alice, publish):
    publish("similar", "itemknn", {shelf[0]: ranked(shelf[4:6])})
    publish("trending", "trending", {0: ranked([shelf[9]])})
    api.force_login(alice)
    assert result_pks(api.get(URL)) == [shelf[9].pk]
    recommender.track(alice, shelf[0], "view")
    assert result_pks(api.get(URL)) == [shelf[4].pk, shelf[5].pk, shelf[9].pk]


def test_served_list_length_reaches_the_api(api, shelf, alice, publish, settings):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "SERVED_LIST_LENGTH": 80}
    publish("trending", "trending", {0: ranked(shelf[4:12])})
    assert api.get("/recommender/api/trending/", {"limit": 80}).status_code == 200
    assert api.get("/recommender/api/trending/", {"limit": 81}).status_code == 400
    settings.RECOMMENDER = {**settings.RECOMMENDER, "SERVED_LIST_LENGTH": 5}
    response = api.get("/recommender/api/trending/", {"limit": 6})
    assert response.status_code == 400 and "limit" in response.json()
    assert api.get("/recommender/api/trending/", {"offset": 5}).status_code == 400
    assert len(api.get("/recommender/api/trending/", {"limit": 5}).json()["results"]) == 5
