"""Deleting a user removes at once what the app kept about them, not only their interactions."""

import pytest
from django.core.cache import caches
from django.template import Context, Template
from django.test import RequestFactory
from rest_framework.test import APIClient

import recommender
from recommender.models import Interaction, ServedList
from recommender.serving import published
from tests.serving.conftest import ranked

pytestmark = pytest.mark.django_db


def _keys(pattern):
    return caches["default"]._cache.get_client().keys(f"*{pattern}*")


def test_deleting_a_user_removes_lists_facts_responses_and_blocks(redis_cache, shelf, alice, bob, publish):
    publish("for_user", "hybrid", {alice: ranked(shelf[4:8]), bob: ranked(shelf[4:8])})
    recommender.track(alice, shelf[9], "purchase")
    api = APIClient()
    api.force_login(alice)
    assert api.get("/recommender/api/recommendations/").status_code == 200  # stores the response and facts
    request = RequestFactory().get("/")
    request.user, request.session = alice, {}
    Template("{% load recommender_tags %}{% recommended_for_you n=3 %}").render(Context({"request": request}))
    pk = alice.pk
    assert _keys(f"recommender:api:rec:{pk}:") and _keys(f"recommender:block:u{pk}:")
    assert _keys(f"recommender:serving:user-facts:{pk}")
    assert published.read("for_user", "hybrid", pk) is not None

    alice.delete()

    assert not ServedList.objects.filter(kind="for_user", subject=pk).exists()
    assert not _keys(f"recommender:list:for_user:hybrid:{pk}")
    assert not _keys(f"recommender:api:rec:{pk}:")
    assert not _keys(f"recommender:block:u{pk}:")
    assert not _keys(f"recommender:serving:user-facts:{pk}")
    assert not Interaction.objects.filter(user_id=pk).exists()
    # another user's list is untouched
    assert ServedList.objects.filter(kind="for_user", subject=bob.pk).exists()
    assert published.read("for_user", "hybrid", bob.pk) is not None


def test_without_redis_the_rows_and_lists_still_go(shelf, alice, publish):
    publish("for_user", "hybrid", {alice: ranked(shelf[4:8])})
    pk = alice.pk
    alice.delete()
    assert not ServedList.objects.filter(subject=pk).exists()
    assert published.read("for_user", "hybrid", pk) is None
