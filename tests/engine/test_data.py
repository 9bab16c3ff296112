"""Interaction-matrix helper and CSV readers."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.engine.data import (
    build_interaction_matrix,
    parse_timestamp,
    read_interactions_csv,
    read_items_csv,
)

DAY = 86_400.0


def test_repeats_are_summed_and_optionally_log_damped():
    X = build_interaction_matrix([0, 0, 1, 0], [1, 1, 0, 2], weights=[1.0, 8.0, 2.0, 4.0])
    assert X.dtype == np.float32 and X.shape == (2, 3)
    assert X.toarray().tolist() == [[0, 9, 4], [2, 0, 0]]
    D = build_interaction_matrix([0, 0], [1, 1], weights=[1.0, 8.0], log_damping=True)
    assert D[0, 1] == pytest.approx(np.log1p(9.0))
    assert build_interaction_matrix([0], [0], n_users=3, n_items=4).shape == (3, 4)


def test_recency_decay_global_and_per_user():
    ts = np.array([100 * DAY, 90 * DAY, 50 * DAY, 40 * DAY])
    X = build_interaction_matrix([0, 0, 1, 1], [0, 1, 0, 1], timestamps=ts,
                                 half_life_days=10.0)
    assert X[0, 0] == pytest.approx(1.0) and X[0, 1] == pytest.approx(0.5)
    assert X[1, 0] == pytest.approx(0.5 ** 5)
    P = build_interaction_matrix([0, 0, 1, 1], [0, 1, 0, 1], timestamps=ts,
                                 half_life_days=10.0, decay="per_user")
    assert P[1, 0] == pytest.approx(1.0) and P[1, 1] == pytest.approx(0.5)
    R = build_interaction_matrix([0], [0], timestamps=[0.0], half_life_days=1.0,
                                 reference_time=2 * DAY)
    assert R[0, 0] == pytest.approx(0.25)


def test_latest_timestamp_matrix_has_the_same_pattern():
    X, T = build_interaction_matrix([1, 0, 1, 1], [2, 0, 2, 1], timestamps=[5.0, 3.0, 9.0, 1.0],
                                    return_timestamps=True)
    assert np.array_equal(X.indices, T.indices) and np.array_equal(X.indptr, T.indptr)
    assert T[1, 2] == 9.0 and T[0, 0] == 3.0 and X[1, 2] == 2.0


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="half_life_days"):
        build_interaction_matrix([0], [0], timestamps=[1.0], half_life_days=0)
    with pytest.raises(ValueError, match="timestamps are required"):
        build_interaction_matrix([0], [0], half_life_days=3.0)
    with pytest.raises(ValueError, match="decay"):
        build_interaction_matrix([0], [0], timestamps=[1.0], half_life_days=3.0, decay="x")
    with pytest.raises(ValueError, match="same length"):
        build_interaction_matrix([0, 1], [0])


def test_csv_readers(tmp_path):
    (tmp_path / "ev.csv").write_text(
        "user_id,item_id,event,value,timestamp\n"
        "a,x,view,,1700000000\n"
        "a,y,purchase,,2023-11-14T22:13:20+00:00\n"
        "b,x,rating,4.5,2023-11-14 22:13:20\n"
        "b,z,wishlist,,\n", encoding="utf-8")
    ev = read_interactions_csv(tmp_path / "ev.csv")
    assert ev["weights"].tolist() == [1.0, 8.0, 4.5, 1.0]
    assert ev["timestamps"][:3].tolist() == [1_700_000_000.0] * 3
    assert np.isnan(ev["timestamps"][3])
    custom = read_interactions_csv(tmp_path / "ev.csv", event_weights={"view": 3.0})
    assert custom["weights"][:2].tolist() == [3.0, 1.0]
    (tmp_path / "items.csv").write_text(
        "item_id,title,description,category,tags\nx,红茶,好喝,食品,茶|饮料\n", encoding="utf-8")
    items = read_items_csv(tmp_path / "items.csv")
    assert items["item_ids"].tolist() == ["x"] and items["category"] == ["食品"]
    assert parse_timestamp("2024-01-01T00:00:00Z") == 1_704_067_200.0
