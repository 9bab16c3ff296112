"""SimilarItems and Complements answer different questions (docs/benchmarks.md, "The shelf")."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recommender.engine import Complements, ItemKNN, SimilarItems
from recommender.engine.complements import colour_free_keys, log_likelihood_ratio, product_line_keys

# 0-2: one alarm clock in three colours; 3: a wall clock; 4: jelly moulds (kitchen);
# 5: a coat rack (furniture); 6: cake cases (kitchen)
ITEMS = {
    "title": ["Alarm Clock Bakelike Ivory", "Alarm Clock Bakelike Red", "Alarm Clock Bakelike Green",
              "Blue Diner Wall Clock", "Set of 4 Pantry Jelly Moulds", "Gumball Coat Rack",
              "Pack of 72 Retrospot Cake Cases"],
    "category": ["Clocks", "Clocks", "Clocks", "Clocks", "Kitchen", "Furniture", "Kitchen"],
}
N = len(ITEMS["title"])


def csr(rows, n=N):
    r = [i for i, items in enumerate(rows) for _ in items]
    c = [j for items in rows for j in items]
    return sp.csr_matrix((np.ones(len(c), np.float32), (r, c)), shape=(len(rows), n))


def test_similar_is_content_not_one_basket():
    # one buyer bought the ivory clock with moulds and a coat rack: purchase co-occurrence
    # (ItemKNN on purchases) calls those similar; SimilarItems names the other clocks
    X = csr([[0, 4, 5], [1], [2], [3], [4, 6], [4, 6]])
    knn = ItemKNN().fit(X).similar_items(0, n=3)[0]
    assert set(knn) == {4, 5}
    similar = SimilarItems().fit(X, item_features=ITEMS).similar_items(0, n=3)[0]
    assert list(similar[:2]) in ([1, 2], [2, 1]) and 3 in similar
    assert not {4, 5} & set(similar)


def test_co_views_count_only_with_min_support():
    X = csr([[0], [4]])
    items = {"title": ["aa", "bb", "cc", "dd", "ee", "ff", "gg"], "category": [""] * N}
    one_viewer = csr([[0, 5]])
    model = SimilarItems(min_support=3).fit(X, item_features=items, views=one_viewer)
    assert 5 not in model.similar_items(0, n=3)[0]
    three_viewers = csr([[0, 5], [0, 5], [0, 5]])
    model = SimilarItems(min_support=3).fit(X, item_features=items, views=three_viewers)
    assert model.similar_items(0, n=3)[0][0] == 5


def test_views_of_held_out_cells_are_masked():
    # the training matrix lacks user 0's view of item 5: that view must not count
    X = csr([[0], [0, 5], [0, 5]])
    items = {"title": ["aa", "bb", "cc", "dd", "ee", "ff", "gg"]}
    views = csr([[0, 5], [0, 5], [0, 5]])
    model = SimilarItems(min_support=3).fit(X, item_features=items, views=views, view_users=[0, 1, 2])
    assert 5 not in model.similar_items(0, n=3)[0]
    model = SimilarItems(min_support=3).fit(X, item_features=items, views=views, view_users=[-1, 1, 2])
    assert model.similar_items(0, n=3)[0][0] == 5


def test_same_category_preferred():
    items = {"title": ["red mug", "red scarf", "blue mug"], "category": ["Kitchen", "Clothes", "Kitchen"]}
    X = csr([[0], [1], [2]], n=3)
    first = SimilarItems(other_category=0.1).fit(X, item_features=items).similar_items(0, n=2)[0]
    assert first[0] == 2


def test_complements_exclude_colours_and_rank_by_significance():
    # the red clock is bought with the ivory one in every basket (a duplicate); the moulds
    # go with everything (popular), the coat rack only with the clock (a complement)
    baskets = csr([[0, 1, 5, 4], [0, 1, 5, 4], [0, 1, 5], [4, 6], [4, 6], [4, 6], [4, 3], [4, 2]])
    model = Complements(min_support=2).fit(csr([[0]]), item_features=ITEMS, baskets=baskets)
    items, _ = model.similar_items(0, n=5)
    assert 1 not in items and 2 not in items
    assert items[0] == 5
    old = ItemKNN().fit(baskets).similar_items(0, n=5)[0]
    assert 1 in old


def test_complements_keep_one_colour_per_product():
    titles = ["Teapot", "Diner Wall Clock Blue", "Diner Wall Clock Red", "Tea Cup"]
    baskets = csr([[0, 1, 3], [0, 2, 3], [0, 1, 2, 3], [0, 1, 3], [1], [2]], n=4)
    items, _ = Complements(min_support=2).fit(baskets, item_features={"title": titles}).similar_items(0, n=3)
    assert sum(i in (1, 2) for i in items) == 1 and 3 in items


def test_complements_leave_out_other_designs_of_the_item_and_keep_one_per_line():
    # 0-2: one hand warmer line in three designs; 3: a hot-water bottle; 4, 5: two jumbo bags of
    # one line; 6: a lunch bag (another product, same pattern as bag 4)
    titles = ["Hand Warmer Red Love Heart", "Hand Warmer Owl Design", "Hand Warmer Scotty Dog Design",
              "Hot Water Bottle Keep Calm", "Jumbo Bag Red Retrospot", "Jumbo Bag Pink Polkadot",
              "Lunch Bag Red Retrospot"]
    items = {"title": titles, "category": ["Warmers"] * 4 + ["Bags"] * 3}
    baskets = csr([[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 3], [0, 2, 3], [4, 5, 6], [4, 5, 6], [4, 6], [5]], n=7)
    model = Complements(min_support=2).fit(baskets, item_features=items)
    assert list(model.similar_items(0, n=5)[0]) == [3]
    assert list(model.similar_items(6, n=5)[0]) in ([4], [5])  # one of the two jumbo bags
    assert set(model.similar_items(4, n=5)[0]) == {6}
    # the rule off: the other designs are what the hand warmer is "bought with"
    off = Complements(min_support=2, line_words=0).fit(baskets, item_features=items)
    assert {1, 2, 3} <= set(off.similar_items(0, n=5)[0])
    assert set(off.similar_items(6, n=5)[0]) == {4, 5}


def test_product_line_keys():
    titles = ["Hand Warmer Red Love Heart", "Hand Warmer Owl Design", "Set of 3 Cake Tins Pantry Design",
              "Set of 4 Pantry Jelly Moulds", "Pack of 72 Retrospot Cake Cases", "White Hanging Heart Holder",
              "Red Hanging Heart Holder", "红色 T恤", "Doormat", "", "Cake Tins Sketchbook"]
    keys = product_line_keys(titles)
    assert keys[0] == keys[1] and keys[5] == keys[6]
    assert keys[2] == keys[10] and len({keys[2], keys[3], keys[4], keys[0]}) == 4
    assert keys[7] == keys[8] == keys[9] == -1  # no two Latin words
    # other categories make other lines; 0 words switch the rule off
    assert len(set(product_line_keys(titles[:2], ["Warmers", "Gifts"]))) == 2
    assert (product_line_keys(titles, words=0) == -1).all()


def test_complements_min_support_and_basket_masking():
    baskets = csr([[0, 5], [0, 5], [3], [4]])
    assert 5 not in Complements(min_support=3).fit(baskets, item_features=ITEMS).similar_items(0)[0]
    assert 5 in Complements(min_support=2).fit(baskets, item_features=ITEMS).similar_items(0)[0]
    # user 0's basket holds item 5, which the training matrix does not have yet
    X = csr([[0], [0, 5]])
    model = Complements(min_support=2).fit(X, item_features=ITEMS, baskets=baskets[:2], basket_users=[0, 1])
    assert 5 not in model.similar_items(0)[0]


def test_colour_keys_and_llr():
    keys = colour_free_keys(["Alarm Clock Red", "Alarm Clock Ivory", "红色 T恤", "蓝色 T恤", "Alarm Clock", ""])
    assert keys[0] == keys[1] == keys[4] and keys[2] == keys[3] and keys[0] != keys[2] and keys[5] == -1
    # independent counts score 0; association scores more with more evidence
    assert log_likelihood_ratio(10, 10, 10, 10) < 1e-9
    assert log_likelihood_ratio(20, 2, 2, 76) > log_likelihood_ratio(10, 1, 1, 38) > 0
