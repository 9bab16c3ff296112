"""Deep engine specifics: progress hook, Keras file, validation early stopping."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.engine.deep import KERAS_FILE, TwoTower
from tests.engine.conftest import ITEMS, make_interactions


def test_progress_callback_and_early_stopping(tmp_path):
    X, _ = make_interactions()
    calls = []
    model = TwoTower(embedding_dim=8, hidden_dim=8, content_dim=4, epochs=3, batch_size=16,
                     random_state=3)
    model.fit(X, item_features=ITEMS,
              progress_callback=lambda epoch, total, logs: calls.append((epoch, total, logs)))
    assert [c[0] for c in calls] == [1, 2, 3] and all(c[1] == 3 for c in calls)
    assert "loss" in calls[0][2] and "val_loss" in calls[0][2]
    assert model.epochs_trained_ == 3
    model.save(tmp_path)
    assert (tmp_path / KERAS_FILE).exists()
    keras_model = TwoTower.load(tmp_path).keras_model(tmp_path)
    assert keras_model.get_layer("item_tower").n_items == X.shape[1] - 1   # warm items only


def test_same_seed_same_model():
    X, _ = make_interactions()
    params = dict(embedding_dim=8, hidden_dim=8, epochs=2, batch_size=16, random_state=5,
                  validation_fraction=0.0)
    a = TwoTower(**params).fit(X)
    b = TwoTower(**params).fit(X)
    np.testing.assert_allclose(a.item_vectors_, b.item_vectors_, rtol=1e-4, atol=1e-5)


def test_without_content_is_a_denoising_autoencoder():
    X, _ = make_interactions()
    model = TwoTower(embedding_dim=8, hidden_dim=16, epochs=30, batch_size=8,
                     learning_rate=0.01, dropout=0.2, patience=30).fit(X)
    row = sp.csr_matrix((np.ones(4, np.float32), ([0] * 4, [5, 6, 7, 8])), shape=(1, 11))
    assert model.recommend(0, row, n=1)[0][0] == 9
    assert not model.content_vectors_.any()


def test_validation_ndcg_drives_early_stopping():
    X, T = make_interactions()
    model = TwoTower(embedding_dim=8, hidden_dim=8, content_dim=4, epochs=3, batch_size=16,
                     patience=3, validation_fraction=0.3, half_life_days=30.0,
                     monitor="ndcg")
    model.fit(X, item_features=ITEMS, timestamps=T)
    assert len(model.history_["val_ndcg"]) == model.epochs_trained_
    assert all(0.0 <= v <= 1.0 for v in model.history_["val_ndcg"])
    assert 1 <= model.best_epoch_ <= model.epochs_trained_


def test_batches_cut_histories_in_time_and_weight_inputs_by_recency():
    day = 86_400.0
    X = sp.csr_matrix(np.ones((1, 5), np.float32))
    T = sp.csr_matrix(np.array([[1.0, 2.0, 3.0, 4.0, 5.0]]) * 10 * day)
    model = TwoTower(half_life_days=10.0, past_weight=0.5)
    position, stamps = model._positions(X, T, np.arange(5))
    x, y, later = model._batch_maker(X, position, stamps)(np.array([0]), None)
    assert later[0].tolist() == [False, False, False, False, True]   # cut at 80%
    assert x[0, 4] == 0 and np.all(np.diff(x[0, :4]) > 0)            # older = lighter
    np.testing.assert_allclose(x[0, :4] / x[0, 3], [0.125, 0.25, 0.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(y[0], [0.5, 0.5, 0.5, 0.5, 1.0])


@pytest.mark.parametrize("name, value", [("half_life_days", 0.0), ("past_weight", -1.0),
                                         ("monitor", "auc"), ("item_bias", "yes")])
def test_new_hyperparameters_are_validated(name, value):
    X, _ = make_interactions()
    with pytest.raises(ValueError, match=name):
        TwoTower(**{name: value}).fit(X)
