"""Reasons of "recommended for you" cards name the history item behind each card, varied."""

import datetime as dt

import numpy as np
import pytest
import scipy.sparse as sp
from django.utils import timezone

from recommender import track
from recommender.engine import ItemKNN
from recommender.engine.neighbors import varied_reasons
from recommender.training import refresh


def history_model():
    # items 0-2 go with 3-4, 5-6 and 7-8 respectively; item 0 also once with 5-8
    rows = [[0, 3, 4]] * 5 + [[1, 5, 6]] * 5 + [[2, 7, 8]] * 5 + [[0, 1, 2], [0, 5, 6, 7, 8]]
    r = [i for i, items in enumerate(rows) for _ in items]
    c = [j for items in rows for j in items]
    X = sp.csr_matrix((np.ones(len(c), np.float32), (r, c)), shape=(len(rows), 9))
    return ItemKNN().fit(X)


def test_each_card_names_its_own_history_item():
    model = history_model()
    # the user bought item 0 twenty times and items 1 and 2 once: weight x similarity made
    # item 0 the reason of every card
    matrix = sp.csr_matrix(np.array([[20, 1, 1, 0, 0, 0, 0, 0, 0]], np.float32))
    cards = [3, 5, 7, 4, 6, 8]
    old = [r[0][0] for r in model.explain_many(0, matrix[0], cards, n=1)]
    assert set(old) == {0}
    ids = np.arange(100, 109)
    because = refresh._because(model, 0, matrix, cards, ids)
    assert because == [100, 101, 102, 100, 101, 102]


def test_capped_reason_order():
    from recommender.engine.neighbors import capped_reason_order

    assert capped_reason_order([7, 7, 7, 3, None], 4) == [0, 1, 3, 4, 2]
    assert capped_reason_order([7, 7, 7, 7], 4) == [0, 1, 2, 3]  # one reason only: the list's order
    assert capped_reason_order([7, 3, 7, 7, 7, 3], 3) == [0, 1, 2, 5, 3, 4]  # 3 -> at most 2 of a reason
    assert capped_reason_order([None] * 3, 1) == [0, 1, 2]
    assert capped_reason_order([7, 7, 7, 3, 7], 4, cap=1) == [0, 3, 1, 2, 4]  # an explicit cap
    with pytest.raises(ValueError):
        capped_reason_order([7], 0)


def test_close_contributors_are_varied():
    contributions = [[(7, 1.0), (3, 0.8)], [(7, 1.0), (3, 0.7)], [(7, 1.0), (3, 0.2)], []]
    assert varied_reasons(contributions, 0.5) == [7, 3, 7, None]
    assert varied_reasons(contributions, 1.0) == [7, 7, 7, None]


@pytest.mark.django_db
def test_baskets_and_views_from_the_database(catalog, alice, bob):
    from recommender.engine import Complements, SimilarItems
    from recommender.training.dataset import engine_inputs, load_interactions

    day = timezone.now() - dt.timedelta(days=3)
    track(alice, catalog[0], "purchase", timestamp=day)
    track(alice, catalog[1], "purchase", timestamp=day + dt.timedelta(minutes=5))
    track(alice, catalog[2], "purchase", timestamp=day + dt.timedelta(days=1))  # another basket
    track(bob, catalog[0], "view", timestamp=day)
    track(bob, catalog[3], "click", timestamp=day)
    track("anonymous-session", catalog[2], "purchase", timestamp=day)
    track("anonymous-session", catalog[3], "purchase", timestamp=day + dt.timedelta(days=2))
    data = load_interactions()
    col = {p.pk: data.item_index(p.pk) for p in catalog}
    extras = engine_inputs(Complements(), data)
    assert set(extras) == {"baskets", "basket_users"}
    baskets = {frozenset(extras["baskets"][r].indices): int(u) for r, u in enumerate(extras["basket_users"])}
    assert baskets == {frozenset({col[catalog[0].pk], col[catalog[1].pk]}): data.user_index(alice.pk),
                       frozenset({col[catalog[2].pk]}): data.user_index(alice.pk),
                       frozenset({col[catalog[2].pk], col[catalog[3].pk]}): -1}
    extras = engine_inputs(SimilarItems(), data)
    assert extras["views"].shape[0] == 1 and list(extras["view_users"]) == [data.user_index(bob.pk)]
    assert sorted(extras["views"][0].indices) == sorted([col[catalog[0].pk], col[catalog[3].pk]])
