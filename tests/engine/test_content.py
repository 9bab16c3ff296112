"""Content-based engine on a Chinese / mixed-language catalog, and cold items."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recommender.engine import ContentBased, ItemContentVectorizer
from recommender.engine.content import mixed_analyzer, tags_analyzer, value_analyzer
from tests.engine.conftest import COLD_ITEM, ITEMS, fitted_engine

CATALOG = {
    "title": ["华为 智能手机 Mate 60", "小米 无线蓝牙耳机", "优衣库 纯棉T恤 男款", "Zara 连衣裙",
              "兰蔻 口红 lipstick", "雅诗兰黛 精华液 serum", "三只松鼠 坚果礼盒", "德芙 巧克力 chocolate",
              "宜家 收纳盒 storage box", "北欧风 台灯 desk lamp", "Apple iPhone 15 智能手机"],
    "description": ["5G 手机 大屏", "降噪 蓝牙 耳机", "夏季 纯棉 T恤", "夏季 女装", "滋润 口红",
                    "保湿 护肤", "零食 坚果", "零食 巧克力", "家居 收纳", "家居 照明", "手机 拍照"],
    "category": ["电子产品", "电子产品", "服装", "服装", "美妆", "美妆", "食品", "食品",
                 "家居用品", "家居用品", "电子产品"],
    "tags": ["手机,5G", "耳机,蓝牙", "T恤", "裙子", "口红", "护肤", "零食", "零食",
             "收纳", "灯具", ["手机", "5G"]],
}


def test_mixed_analyzer_cuts_chinese_into_characters_and_keeps_words():
    tokens = mixed_analyzer("华为手机 Mate60 pro")
    assert {"华", "为", "手", "机", "华为", "为手", "手机"} <= set(tokens)
    assert {"mate60", "pro"} <= set(tokens)
    assert value_analyzer("电子产品 > 手机") == ["电子产品", "电子产品 > 手机"]
    assert tags_analyzer("手机, 5G；蓝牙") == ["手机", "5g", "蓝牙"]


def test_vectorizer_rows_are_normalised_and_similar_within_category():
    F = ItemContentVectorizer().fit_transform(CATALOG)
    assert F.shape[0] == 11
    np.testing.assert_allclose(np.sqrt(F.multiply(F).sum(axis=1)).A1, 1.0, rtol=1e-5)
    sims = (F @ F.T).toarray()
    assert sims[0, 10] > sims[0, 2]               # two phones vs phone / T-shirt
    assert sims[6, 7] > sims[6, 4]                # two snacks vs snack / lipstick
    again = ItemContentVectorizer().fit(CATALOG) if hasattr(ItemContentVectorizer, "fit") else None
    assert again is None or again.transform(CATALOG).shape == F.shape


def test_chinese_catalog_recommends_same_category_and_cold_items():
    # items 10 (iPhone) and 5 (serum) have no interactions at all
    X = sp.csr_matrix((np.ones(6, np.float32), ([0, 0, 1, 1, 2, 2], [0, 1, 4, 3, 6, 8])),
                      shape=(3, 11))
    model = ContentBased().fit(X, item_features=CATALOG)
    top, _ = model.recommend(0, X[0], n=1)
    assert top[0] == 10                           # phone fan gets the new phone
    top, _ = model.recommend(1, X[1], n=1)
    assert top[0] == 5 or top[0] == 2             # beauty / clothes fan
    similar, _ = model.similar_items(0, n=1)
    assert similar[0] == 10
    reasons = model.explain(0, X[0], 10, n=2)
    assert reasons[0][0] == 0


def test_sparse_item_features_are_accepted():
    F = sp.identity(4, format="csr", dtype=np.float32)
    X = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 1, 0, 0]], np.float32))
    model = ContentBased().fit(X, item_features=F)
    assert model.recommend(0, X[0], n=2)[0].shape == (2,)


def test_cold_item_is_recommended_by_content_and_deep_engines():
    from tests.engine.conftest import make_interactions

    X, _ = make_interactions()
    assert X[:, COLD_ITEM].nnz == 0
    electronics_fan = sp.csr_matrix((np.ones(4, np.float32), ([0] * 4, [0, 1, 2, 3])),
                                    shape=(1, X.shape[1]))
    for name in ("content", "two_tower"):
        model = fitted_engine(name)
        # ranked among the clothes, the cold earphone must come first
        items, _ = model.recommend(0, electronics_fan, n=1, items=[5, 6, 7, 8, 9, COLD_ITEM])
        assert items[0] == COLD_ITEM, name
    deep = fitted_engine("two_tower")
    scores = deep.content_scores(electronics_fan)[0]
    assert scores[COLD_ITEM] > scores[5:10].max()
    assert ITEMS["category"][COLD_ITEM] == "电子产品"
