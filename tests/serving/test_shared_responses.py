"""Anonymous visitors' similar-items, bought-together and trending responses are stored once, for all."""

import base64

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

import recommender
from recommender.fastpath import responses
from tests.serving.conftest import ranked

pytestmark = pytest.mark.django_db


def _items(response):
    assert response.status_code == 200, response.content[:300]
    return [r["item"] for r in response.json()["results"]]


def _queries(queries):
    return [q for q in queries if "shop_product" in q["sql"] or "recommender_" in q["sql"]]


def test_anonymous_responses_are_shared_and_follow_lists_and_items(redis_cache, shelf, publish):
    publish("similar", "itemknn", {shelf[0]: ranked(shelf[4:10])})
    url = f"/recommender/api/items/{shelf[0].pk}/similar/"
    first = Client().get(url, {"limit": 2})
    assert _items(first) == [shelf[4].pk, shelf[5].pk]
    with CaptureQueriesContext(connection) as queries:
        second = Client().get(url, {"limit": 2})  # another visitor
    assert second.content == responses.encode(first.json()) and _queries(queries) == []
    assert _items(Client().get(url, {"limit": 3})) == [shelf[4].pk, shelf[5].pk, shelf[6].pk]  # own entry
    publish("similar", "itemknn", {shelf[0]: ranked(shelf[6:10])})  # a retrain
    assert _items(Client().get(url, {"limit": 2})) == [shelf[6].pk, shelf[7].pk]
    shelf[6].is_active = False
    shelf[6].save()
    assert _items(Client().get(url, {"limit": 2})) == [shelf[7].pk, shelf[8].pk]
    assert Client().get("/recommender/api/items/999999/similar/").status_code == 404
    assert Client().get("/recommender/api/items/abc/similar/").status_code == 404


def test_logged_in_visitors_are_not_served_the_shared_response(redis_cache, shelf, alice, publish):
    publish("bought_together", "cooccurrence", {shelf[0]: ranked(shelf[4:10])})
    recommender.track(alice, shelf[4], "purchase")
    url = f"/recommender/api/items/{shelf[0].pk}/bought-together/"
    assert _items(Client().get(url, {"limit": 2})) == [shelf[4].pk, shelf[5].pk]
    assert _items(Client().get(url, {"limit": 2})) == [shelf[4].pk, shelf[5].pk]
    client = Client()
    client.force_login(alice)
    assert _items(client.get(url, {"limit": 2})) == [shelf[5].pk, shelf[6].pk]  # her purchase left out


def test_other_authentication_goes_through_drf(redis_cache, shelf, alice, publish, monkeypatch):
    from rest_framework.authentication import BasicAuthentication, SessionAuthentication

    from recommender.api.recommendations import SimilarItemsView

    # a site whose API also takes HTTP Basic credentials
    monkeypatch.setattr(SimilarItemsView, "authentication_classes", [SessionAuthentication, BasicAuthentication])
    publish("similar", "itemknn", {shelf[0]: ranked(shelf[4:10])})
    recommender.track(alice, shelf[4], "purchase")
    url = f"/recommender/api/items/{shelf[0].pk}/similar/"
    assert _items(Client().get(url, {"limit": 2})) == [shelf[4].pk, shelf[5].pk]  # stored for anonymous
    basic = "Basic " + base64.b64encode(b"alice:pw-alice-123").decode()
    assert _items(Client().get(url, {"limit": 2}, HTTP_AUTHORIZATION=basic)) == [shelf[5].pk, shelf[6].pk]


def test_trending_pages_with_fallback_items_are_kept_a_minute_only(redis_cache, shelf, publish):
    publish("trending", "trending", {0: ranked(shelf[4:10])})
    publish("popular", "popular", {0: ranked(shelf[0:3])})
    _items(Client().get("/recommender/api/trending/", {"limit": 2}))
    with CaptureQueriesContext(connection) as queries:
        assert _items(Client().get("/recommender/api/trending/", {"limit": 2})) == [shelf[4].pk, shelf[5].pk]
    assert _queries(queries) == []
    mugs = shelf[0].category_id  # trending has 4 mugs (4-7): the third page comes from popular
    url = "/recommender/api/trending/"
    _items(Client().get(url, {"limit": 2, "offset": 4, "category": mugs}))
    from recommender.serving import published

    cache, client = published.backend()
    ttls = sorted(client.ttl(key) for key in client.scan_iter(cache.make_key("recommender:api:rec:anon:*")))
    assert len(ttls) == 2 and 0 < ttls[0] <= responses.SHORT_TIMEOUT < ttls[1], ttls


def test_anonymous_throttle_is_counted_once_on_the_fast_path(redis_cache, shelf, publish, settings):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "THROTTLE_RATES": {"recommendations_anon": "3/min"}}
    publish("similar", "itemknn", {shelf[0]: ranked(shelf[4:10])})
    url = f"/recommender/api/items/{shelf[0].pk}/similar/"
    codes = [Client().get(url, {"limit": 2}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


def test_a_category_trending_response_follows_the_categorys_own_list(redis_cache, shelf, publish):
    from shopdemo.shop.models import Category

    mugs = Category.objects.get(slug="mugs")
    publish("trending", "trending", {0: ranked(shelf[8:12]), mugs.pk: ranked(shelf[4:6])})
    url = "/recommender/api/trending/"
    assert _items(Client().get(url, {"category": mugs.pk, "limit": 2})) == [shelf[4].pk, shelf[5].pk]
    assert _items(Client().get(url, {"category": mugs.pk, "limit": 2})) == [shelf[4].pk, shelf[5].pk]
    publish("trending", "trending", {mugs.pk: ranked([shelf[6], shelf[7]])})  # only the category's list
    assert _items(Client().get(url, {"category": mugs.pk, "limit": 2})) == [shelf[6].pk, shelf[7].pk]
