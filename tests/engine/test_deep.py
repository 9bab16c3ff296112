"""Deep engine specifics: progress hook, Keras file, validation early stopping."""

from __future__ import annotations

import numpy as np
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
