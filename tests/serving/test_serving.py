"""recommender.serving: lists, business rules, fallbacks and reasons, read cheaply."""

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

import recommender
from recommender import serving
from recommender.serving import candidates
from tests.serving.conftest import ranked

pytestmark = pytest.mark.django_db


def pks(recs):
    return [rec.item.pk for rec in recs]


def anonymous_request(session_key=None):
    from django.contrib.auth.models import AnonymousUser

    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    request.session = SessionStore(session_key)
    if session_key is None:
        request.session.create()
    return request


def user_request(user):
    request = RequestFactory().get("/")
    request.user = user
    request.session = SessionStore()
    return request


# The user's own list --------------------------------------------------------------------


def test_user_list_in_order_with_reasons(shelf, alice, publish):
    recommender.track(alice, shelf[0], "view")
    recommender.track(alice, shelf[1], "purchase")
    publish("for_user", "hybrid", {alice: [(shelf[4], 0.9, shelf[0]), (shelf[5], 0.8, shelf[1]),
                                           (shelf[6], 0.7, None)]})
    recs = serving.recommend_for(alice, n=3)
    assert pks(recs) == [shelf[4].pk, shelf[5].pk, shelf[6].pk]
    assert [r.reason for r in recs] == ["Because you viewed Red Spotty Mug",
                                        "Because you bought Blue Polka Mug", "Recommended for you"]
    assert recs[0].because == shelf[0] and recs[2].because is None
    assert {r.algorithm for r in recs} == {"hybrid"} and recs[0].score == 0.9
    assert (recs[0].title, recs[0].price) == ("Mug 4", shelf[4].price)
    assert recs[0].url == f"/product/{shelf[4].pk}/"


def test_one_history_item_is_the_reason_of_at_most_half_the_block(shelf, alice, publish):
    """A list re-scored after one view can owe its top items to that view; the block mixes
    in the items the rest of the history brought, in their order."""
    recommender.track(alice, shelf[0], "view")
    recommender.track(alice, shelf[1], "purchase")
    publish("for_user", "hybrid", {alice: [(shelf[4], 0.9, shelf[0]), (shelf[5], 0.8, shelf[0]),
                                           (shelf[6], 0.7, shelf[0]), (shelf[7], 0.6, shelf[0]),
                                           (shelf[8], 0.5, shelf[1]), (shelf[9], 0.4, shelf[1])]})
    recs = serving.recommend_for(alice, n=4)
    assert pks(recs) == [shelf[4].pk, shelf[5].pk, shelf[8].pk, shelf[9].pk]
    assert [r.because for r in recs] == [shelf[0], shelf[0], shelf[1], shelf[1]]
    # a longer block: the capped items follow the others, in their order
    assert pks(serving.recommend_for(alice, n=6)) == [shelf[4].pk, shelf[5].pk, shelf[6].pk,
                                                      shelf[8].pk, shelf[9].pk, shelf[7].pk]
    # with one reason only, or none, the order is the list's
    publish("for_user", "hybrid", {alice: [(shelf[4], 0.9, shelf[0]), (shelf[5], 0.8, shelf[0]),
                                           (shelf[6], 0.7, None), (shelf[7], 0.6, None)]})
    assert pks(serving.recommend_for(alice, n=3)) == [shelf[4].pk, shelf[5].pk, shelf[6].pk]
    publish("for_user", "hybrid", {alice: [(shelf[4], 0.9, shelf[0]), (shelf[5], 0.8, shelf[0]),
                                           (shelf[6], 0.7, shelf[0])]})
    assert pks(serving.recommend_for(alice, n=2)) == [shelf[4].pk, shelf[5].pk]
    assert pks(serving.recommend_for(alice, n=3)) == [shelf[4].pk, shelf[5].pk, shelf[6].pk]


def test_the_reason_share_holds_within_a_category(shelf, alice, publish):
    """A category page keeps the list's items of one category: the share is counted on those."""
    mugs = [shelf[4], shelf[5], shelf[6], shelf[7]]
    recommender.track(alice, shelf[0], "view")
    recommender.track(alice, shelf[1], "view")
    # unfiltered, the share for 2 cards moves the bags forward: [mug 4, bag 9, bag 8, mug 5, mug 6, ...]
    publish("for_user", "hybrid", {alice: [(mugs[0], 0.9, shelf[0]), (shelf[8], 0.8, shelf[0]),
                                           (mugs[1], 0.7, shelf[0]), (shelf[9], 0.6, shelf[1]),
                                           (mugs[2], 0.5, shelf[1])]})
    recs = serving.recommend_for(alice, n=2, category=mugs[0].category)
    assert pks(recs) == [mugs[0].pk, mugs[2].pk]
    assert [r.because for r in recs] == [shelf[0], shelf[1]]
    # a held card comes before the fallbacks (trending): [mug 4, mug 5, mug 6 held, trending]
    publish("for_user", "hybrid", {alice: [(mugs[0], 0.9, shelf[0]), (mugs[1], 0.8, shelf[0]),
                                           (shelf[8], 0.7, shelf[1]), (mugs[2], 0.6, shelf[0])]})
    subject = candidates.category_subject(mugs[0].category)
    publish("trending", "trending", {0: ranked([mugs[3]]), subject: ranked([mugs[3]])})
    recs = serving.recommend_for(alice, n=4, category=mugs[0].category)
    assert pks(recs) == [mugs[0].pk, mugs[1].pk, mugs[2].pk, mugs[3].pk]
    assert recs[3].kind == "trending"


def test_a_list_shows_at_most_two_designs_of_a_product_line(shelf, alice, publish, settings):
    """Three designs of one product (one category, the same first two title words once
    colours are removed) in a row of five read as one product three times."""
    jumbo = shelf[4:7]
    for item, colour in zip(jumbo, ("Red", "Blue", "Pink"), strict=True):
        item.title = f"Jumbo Bag {colour}"
        item.save()
    shelf[7].title = "Lunch Box Owl"
    shelf[7].save()
    ranked_list = ranked([*jumbo, shelf[7]])
    publish("trending", "trending", {0: ranked_list})
    assert pks(serving.trending(n=3)) == [jumbo[0].pk, jumbo[1].pk, shelf[7].pk]
    assert pks(serving.trending(n=4)) == [jumbo[0].pk, jumbo[1].pk, shelf[7].pk, jumbo[2].pk]  # none other left
    publish("for_user", "hybrid", {alice: ranked_list})
    assert pks(serving.recommend_for(alice, n=3)) == [jumbo[0].pk, jumbo[1].pk, shelf[7].pk]
    # the third design waits for the later sources (here trending), not only for its own list's items
    publish("for_user", "hybrid", {alice: ranked(jumbo)})
    publish("trending", "trending", {0: ranked([shelf[7], shelf[8]])})
    assert pks(serving.recommend_for(alice, n=3)) == [jumbo[0].pk, jumbo[1].pk, shelf[7].pk]
    assert pks(serving.recommend_for(alice, n=5)) == [jumbo[0].pk, jumbo[1].pk, shelf[7].pk, shelf[8].pk,
                                                      jumbo[2].pk]
    publish("trending", "trending", {0: ranked_list})
    # "similar items" are other designs on purpose: not capped
    publish("similar", "itemknn", {shelf[0]: ranked_list})
    assert pks(serving.similar_items(shelf[0], n=3, algorithm="itemknn")) == [x.pk for x in jumbo]
    settings.RECOMMENDER = {**getattr(settings, "RECOMMENDER", {}), "SAME_LINE_CAP": 0}
    assert pks(serving.trending(n=3)) == [x.pk for x in jumbo]


def test_a_category_page_reaches_items_bought_with_the_visitors_items(shelf, alice, publish):
    """Similar items stay in the item's category; what was bought with the visitor's items
    reaches others, so a category page can show personal cards without the user's list."""
    recommender.track(alice, shelf[0], "purchase")  # a mug
    bags = shelf[8].category
    from recommender.conf import rec_settings

    publish("similar", rec_settings.list_algorithm("similar"), {shelf[0]: ranked([shelf[4], shelf[5]])})  # mugs
    publish("bought_together", rec_settings.list_algorithm("bought_together"),
            {shelf[0]: ranked([shelf[9], shelf[10]])})  # bags
    publish("trending", "trending", {0: ranked([shelf[11]])})
    recs = serving.recommend_for(alice, n=3, category=bags)
    assert pks(recs) == [shelf[9].pk, shelf[10].pk, shelf[11].pk]
    assert [r.kind for r in recs] == ["history", "history", "trending"]
    assert recs[0].reason == "Because you bought Red Spotty Mug"
    # without a category the similar items come first
    assert pks(serving.recommend_for(alice, n=3)) == [shelf[4].pk, shelf[5].pk, shelf[9].pk]


def test_reasons_are_not_capped_in_item_blocks():
    similar = [(pk, 1.0 - pk / 10, 1, "similar", "similar", None, None) for pk in range(5)]
    assert candidates.vary_reasons(similar, 2) == similar


def test_a_block_shows_one_of_the_products_sharing_a_title(shelf, alice, publish):
    """Two products with one title (another colour or size) would read as one card twice."""
    shelf[5].title = " mug  4"  # the title of shelf[4], spaced and cased differently
    shelf[5].save()
    publish("for_user", "hybrid", {alice: ranked(shelf[4:8])})
    assert pks(serving.recommend_for(alice, n=3)) == [shelf[4].pk, shelf[6].pk, shelf[7].pk]
    publish("similar", "itemknn", {shelf[0]: ranked(shelf[4:8])})
    assert pks(serving.similar_items(shelf[0], n=3, algorithm="itemknn")) == [shelf[4].pk, shelf[6].pk, shelf[7].pk]
    # excluded where the first one is excluded: the other is shown
    assert pks(serving.recommend_for(alice, n=2, exclude=[shelf[4]])) == [shelf[5].pk, shelf[6].pk]
    # nor beside the product it is a twin of: similar to shelf[4], bought with shelf[4]
    publish("similar", "itemknn", {shelf[4]: ranked([shelf[5], shelf[6]])})
    assert pks(serving.similar_items(shelf[4], n=2, algorithm="itemknn")) == [shelf[6].pk]
    publish("bought_together", "cooccurrence", {shelf[4]: ranked([shelf[5], shelf[7]])})
    assert pks(serving.bought_together(shelf[4], n=2, algorithm="cooccurrence")) == [shelf[7].pk]
    # nor one titled as an item an earlier block of the page showed (exclude_titles)
    assert pks(serving.recommend_for(alice, n=2, exclude_titles=["MUG 4 "])) == [shelf[6].pk, shelf[7].pk]
    assert pks(serving.trending(n=2, exclude_titles=["mug 4"])) == []
    publish("trending", "trending", {0: ranked(shelf[4:8])})
    assert pks(serving.trending(n=2, exclude_titles=["mug 4", "Mug 6"])) == [shelf[7].pk]
    assert pks(serving.similar_items(shelf[0], n=2, algorithm="itemknn", exclude_titles=["mug 6"])) == [
        shelf[4].pk, shelf[7].pk]
    # nor one titled as the history item its reason names ("Because you viewed Mug 4": not mug 4 again)
    publish("for_user", "hybrid", {alice: ranked([shelf[5], shelf[6]], because=shelf[4])})
    recs = serving.recommend_for(alice, n=2)
    assert pks(recs)[0] == shelf[6].pk and recs[0].because == shelf[4]


def test_other_algorithm(shelf, alice, publish):
    publish("for_user", "als", {alice: ranked(shelf[8:10])})
    publish("for_user", "hybrid", {alice: ranked(shelf[4:6])})
    assert pks(serving.recommend_for(alice, n=2, algorithm="als")) == [shelf[8].pk, shelf[9].pk]
    assert serving.recommend_for(alice, n=2, algorithm="als")[0].algorithm == "als"


def test_rules_inactive_bought_excluded_and_category(shelf, alice, publish):
    recommender.track(alice, shelf[5], "purchase")
    publish("for_user", "hybrid", {alice: ranked([shelf[3], *shelf[4:7], shelf[8], shelf[9]])})
    # shelf[3] is inactive, shelf[5] bought
    assert pks(serving.recommend_for(alice, n=10)) == [shelf[4].pk, shelf[6].pk, shelf[8].pk, shelf[9].pk]
    recs = serving.recommend_for(alice, n=10, exclude=[shelf[6], shelf[8].pk])
    assert pks(recs) == [shelf[4].pk, shelf[9].pk]
    bags = shelf[2].category
    assert pks(serving.recommend_for(alice, n=10, category=bags)) == [shelf[8].pk, shelf[9].pk]
    assert pks(serving.recommend_for(alice, n=10, category=bags.pk)) == [shelf[8].pk, shelf[9].pk]


def test_over_fetch_fills_n_after_filtering(shelf, alice, publish):
    recommender.track(alice, shelf[4], "purchase")
    recommender.track(alice, shelf[5], "purchase")
    publish("for_user", "hybrid", {alice: ranked([shelf[3], shelf[4], shelf[5], *shelf[6:12]])})
    with CaptureQueriesContext(connection) as queries:
        recs = serving.recommend_for(alice, n=3)
    assert pks(recs) == [p.pk for p in shelf[6:9]]
    # the user's facts (not cached yet) and the items; the list comes from the cache
    assert len(queries) == 2


def test_warm_path_needs_no_query(shelf, alice, publish, settings):
    publish("for_user", "hybrid", {alice: ranked(shelf[4:10])})
    first = serving.recommend_for(alice, n=4)
    with CaptureQueriesContext(connection) as queries:
        recs = serving.recommend_for(alice, n=4)
    assert [(r.item.pk, r.reason, str(r.item.category)) for r in recs] == [
        (r.item.pk, r.reason, str(r.item.category)) for r in first]
    assert len(queries) == 0, [q["sql"] for q in queries]  # list, facts and items all cached
    # without the item cache: one query, the items with their category joined
    settings.RECOMMENDER = {**settings.RECOMMENDER, "ITEM_CACHE_TIMEOUT": None}
    with CaptureQueriesContext(connection) as queries:
        assert len(serving.recommend_for(alice, n=4)) == 4
    assert len(queries) == 1, [q["sql"] for q in queries]
    assert "JOIN" in queries[0]["sql"]


def test_item_cache_follows_item_changes(shelf, alice, publish):
    publish("for_user", "hybrid", {alice: ranked(shelf[4:10])})
    assert [r.item.pk for r in serving.recommend_for(alice, n=2)] == [shelf[4].pk, shelf[5].pk]
    shelf[4].title = "Renamed Mug"
    shelf[4].save()  # a new items token: every cached item is read again
    recs = serving.recommend_for(alice, n=2)
    assert recs[0].item.title == "Renamed Mug"
    shelf[5].is_active = False
    shelf[5].save()
    assert [r.item.pk for r in serving.recommend_for(alice, n=2)] == [shelf[4].pk, shelf[6].pk]
    shelf[6].delete()
    assert [r.item.pk for r in serving.recommend_for(alice, n=2)] == [shelf[4].pk, shelf[7].pk]


def test_purchase_invalidates_the_bought_filter(shelf, alice, publish):
    publish("for_user", "hybrid", {alice: ranked(shelf[4:8])})
    assert pks(serving.recommend_for(alice, n=2)) == [shelf[4].pk, shelf[5].pk]
    recommender.track(alice, shelf[4], "purchase")
    assert pks(serving.recommend_for(alice, n=2)) == [shelf[5].pk, shelf[6].pk]


def test_item_changes_apply_at_once(shelf, alice, publish):
    publish("for_user", "hybrid", {alice: ranked(shelf[4:8])})
    assert pks(serving.recommend_for(alice, n=2)) == [shelf[4].pk, shelf[5].pk]
    shelf[4].is_active = False
    shelf[4].save()
    assert pks(serving.recommend_for(alice, n=2)) == [shelf[5].pk, shelf[6].pk]


def test_no_lists_no_recommendations(shelf, alice):
    assert serving.recommend_for(alice) == []
    assert serving.recommend_for(anonymous_request()) == []
    assert serving.similar_items(shelf[0]) == []
    assert serving.bought_together(shelf[0]) == []
    assert serving.trending() == []


# Fallbacks ----------------------------------------------------------------------------------


def test_cold_user_gets_trending_then_popular(shelf, alice, publish):
    publish("trending", "trending", {0: ranked([shelf[8], shelf[3]])})
    publish("popular", "popular", {0: ranked([shelf[8], shelf[0], shelf[9]])})
    recs = serving.recommend_for(alice, n=3)
    assert pks(recs) == [shelf[8].pk, shelf[0].pk, shelf[9].pk]
    assert [r.reason for r in recs] == ["Trending now", "Popular in Mugs", "Popular in Bags"]
    assert [r.algorithm for r in recs] == ["trending", "popular", "popular"]


def test_anonymous_session_history_then_trending(shelf, publish):
    request = anonymous_request()
    key = request.session.session_key
    recommender.track(key, shelf[0], "view")
    recommender.track(key, shelf[2], "view")  # newest
    publish("similar", "itemknn", {
        shelf[0]: [(shelf[4], 0.9, None), (shelf[5], 0.5, None), (shelf[2], 0.4, None)],
        shelf[2]: [(shelf[8], 0.6, None), (shelf[5], 0.5, None)],
    })
    publish("trending", "trending", {0: ranked([shelf[0], shelf[11]])})
    recs = serving.recommend_for(request, n=5)
    # 5: 0.5 * 1 (bag, newest) + 0.5 * 0.85 (mug); 4: 0.9 * 0.85; 8: 0.6; viewed items never come back
    assert pks(recs) == [shelf[5].pk, shelf[4].pk, shelf[8].pk, shelf[11].pk]
    assert [r.reason for r in recs] == [
        "Because you viewed Jumbo Shopper Bag", "Because you viewed Red Spotty Mug",
        "Because you viewed Jumbo Shopper Bag", "Trending now"]
    assert recs[1].algorithm == "itemknn" and recs[1].because == shelf[0]


def test_history_changes_the_fallback_at_once(shelf, publish):
    request = anonymous_request()
    publish("similar", "itemknn", {shelf[0]: ranked(shelf[4:6]), shelf[2]: ranked(shelf[8:10])})
    publish("popular", "popular", {0: ranked(shelf[10:12])})
    assert pks(serving.recommend_for(request, n=2)) == [shelf[10].pk, shelf[11].pk]
    recommender.track(request.session.session_key, shelf[2], "view")
    assert pks(serving.recommend_for(request, n=2)) == [shelf[8].pk, shelf[9].pk]


def test_cold_user_history_says_bought(shelf, alice, publish):
    recommender.track(alice, shelf[0], "purchase")
    publish("similar", "itemknn", {shelf[0]: ranked(shelf[4:6])})
    recs = serving.recommend_for(alice, n=1)
    assert recs[0].reason == "Because you bought Red Spotty Mug"


def test_user_list_filled_from_fallbacks(shelf, alice, publish):
    publish("for_user", "hybrid", {alice: ranked([shelf[4]])})
    publish("trending", "trending", {0: ranked([shelf[4], shelf[9]])})
    recs = serving.recommend_for(user_request(alice), n=2)
    assert pks(recs) == [shelf[4].pk, shelf[9].pk]
    assert [r.kind for r in recs] == ["for_user", "trending"]


def test_anonymous_without_tracking_gets_trending(shelf, publish, settings):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "TRACK_ANONYMOUS": False}
    request = anonymous_request()
    recommender.track(request.session.session_key, shelf[0], "view")
    publish("similar", "itemknn", {shelf[0]: ranked(shelf[4:6])})
    publish("trending", "trending", {0: ranked([shelf[9]])})
    assert pks(serving.recommend_for(request, n=2)) == [shelf[9].pk]


# Item blocks ------------------------------------------------------------------------------------


def test_similar_items_rules_and_reason(shelf, alice, publish):
    recommender.track(alice, shelf[6], "purchase")
    publish("similar", "itemknn", {shelf[0]: ranked([shelf[0], shelf[3], shelf[4], shelf[6], shelf[7]])})
    recs = serving.similar_items(shelf[0], n=5, request=user_request(alice))
    assert pks(recs) == [shelf[4].pk, shelf[7].pk]  # not itself, inactive or bought
    assert recs[0].reason == "Similar to Red Spotty Mug" and recs[0].because == shelf[0]
    assert pks(serving.similar_items(shelf[0], n=5, exclude=[shelf[4].pk])) == [shelf[6].pk, shelf[7].pk]


def test_similar_items_fall_back_to_popular_in_category(shelf, publish):
    publish("popular", "popular", {0: ranked([shelf[8], shelf[1], shelf[9], shelf[4]])})
    recs = serving.similar_items(shelf[0], n=3)
    assert pks(recs) == [shelf[1].pk, shelf[4].pk]
    assert recs[0].reason == "Popular in Mugs"


def test_new_item_through_content_similarity(shelf, publish, settings):
    # a content algorithm publishes "similar" lists for items nobody bought yet
    settings.RECOMMENDER = {**settings.RECOMMENDER, "SIMILAR_ALGORITHM": "content"}
    publish("similar", "content", {shelf[11]: ranked(shelf[8:10])})
    assert pks(serving.similar_items(shelf[11], n=2)) == [shelf[8].pk, shelf[9].pk]


def test_bought_together_for_a_cart(shelf, publish):
    publish("bought_together", "cooccurrence", {
        shelf[0]: [(shelf[1], 0.5, None), (shelf[4], 0.4, None), (shelf[2], 0.3, None)],
        shelf[2]: [(shelf[4], 0.3, None), (shelf[8], 0.6, None)],
    })
    recs = serving.bought_together([shelf[0], shelf[2]], n=5)
    assert pks(recs) == [shelf[4].pk, shelf[8].pk, shelf[1].pk]  # never the cart's own items
    assert recs[0].reason == "Customers who bought Red Spotty Mug also bought this"
    assert recs[1].reason == "Customers who bought Jumbo Shopper Bag also bought this"
    single = serving.bought_together(shelf[2].pk, n=1)
    assert pks(single) == [shelf[8].pk] and single[0].because == shelf[2]


def test_trending_by_category(shelf, publish):
    publish("trending", "trending", {0: ranked([shelf[0], shelf[8], shelf[4]])})
    publish("popular", "popular", {0: ranked([shelf[9], shelf[5]])})
    bags = shelf[8].category
    recs = serving.trending(n=3, category=bags)
    assert pks(recs) == [shelf[8].pk, shelf[9].pk]
    assert [r.reason for r in recs] == ["Trending now", "Popular in Bags"]


def test_reasons_go_through_gettext(shelf, alice, publish, monkeypatch):
    monkeypatch.setattr(candidates, "_", lambda text: "«" + text + "»")
    recommender.track(alice, shelf[0], "view")
    publish("for_user", "hybrid", {alice: [(shelf[4], 0.9, shelf[0])]})
    publish("trending", "trending", {0: ranked([shelf[8]])})
    assert [r.reason for r in serving.recommend_for(alice, n=2)] == [
        "«Because you viewed %(title)s»".replace("%(title)s", "Red Spotty Mug"), "«Trending now»"]
