"""The ORM -> CSR bridge: weights, repeats, ratings, id maps, items with no interactions."""

import datetime as dt

import numpy as np
import pytest
from django.utils import timezone

from recommender import track
from recommender.training.dataset import load_interactions


@pytest.mark.django_db
def test_matrix_from_interactions(catalog, alice, bob):
    t0 = timezone.now() - dt.timedelta(days=1)
    track(alice, catalog[0], "view", timestamp=t0)
    track(alice, catalog[0], "view", timestamp=t0 + dt.timedelta(minutes=1))
    track(alice, catalog[1], "purchase", value=3, timestamp=t0 + dt.timedelta(minutes=2))
    track(bob, catalog[2], "rating", value=4.0, timestamp=t0 + dt.timedelta(minutes=3))
    track("anonymous-session", catalog[2], "view")  # anonymous rows are not training rows

    data = load_interactions()
    assert data.matrix.shape == (2, 4)  # every product is a column, even unseen ones
    assert list(data.user_ids) == sorted([alice.pk, bob.pk])
    assert list(data.item_ids) == sorted(p.pk for p in catalog)
    a, b = data.user_index(alice.pk), data.user_index(bob.pk)
    col = {p.pk: data.item_index(p.pk) for p in catalog}
    dense = data.matrix.toarray()
    assert dense[a, col[catalog[0].pk]] == pytest.approx(2.0)   # two views, weight 1 each
    assert dense[a, col[catalog[1].pk]] == pytest.approx(8.0)   # a purchase, whatever the quantity
    assert dense[b, col[catalog[2].pk]] == pytest.approx(4.0)   # rating weight 1 x 4 stars
    assert dense[:, col[catalog[3].pk]].sum() == 0
    assert data.n_interactions == 4
    assert data.user_index(999_999) is None


@pytest.mark.django_db
def test_recency_decay_halves_old_weights(catalog, alice):
    now = timezone.now()
    track(alice, catalog[0], "click", timestamp=now - dt.timedelta(days=10))
    track(alice, catalog[1], "click", timestamp=now)
    data = load_interactions(half_life_days=10)
    row = data.matrix.toarray()[0]
    old, new = row[data.item_index(catalog[0].pk)], row[data.item_index(catalog[1].pk)]
    assert old == pytest.approx(new / 2, rel=1e-3)


@pytest.mark.django_db
def test_empty_table(catalog):
    data = load_interactions()
    assert data.matrix.shape == (0, 4) and data.n_interactions == 0 and data.cutoff is None
    assert np.asarray(data.matrix.sum()) == 0


@pytest.mark.django_db
def test_impressions_and_cancelled_cart_adds_make_no_cell(catalog, alice):
    track(alice, catalog[0], "impression")
    track(alice, catalog[1], "remove_from_cart")
    track(alice, catalog[2], "add_to_cart")
    track(alice, catalog[2], "remove_from_cart")
    data = load_interactions(log_damping=True, with_timestamps=True)
    row = data.matrix.toarray()[0]
    assert row[data.item_index(catalog[2].pk)] > 0  # 4 - 2 = 2
    assert data.matrix.nnz == 1 and data.timestamps.nnz == 1
    assert np.array_equal(data.matrix.indices, data.timestamps.indices)
