"""Turn plain arrays (or CSV files) of interactions into a weighted CSR matrix.

The caller maps database ids to indices and applies event weights; this module sums
repeats, optionally log-damps them and applies a recency decay with a half-life.

Example
-------
>>> import numpy as np
>>> from recommender.engine.data import build_interaction_matrix
>>> X = build_interaction_matrix(np.array([0, 0, 1]), np.array([1, 1, 0]),
...                              weights=np.array([1.0, 8.0, 2.0]))
>>> X.toarray().tolist()
[[0.0, 9.0], [2.0, 0.0]]
"""

from __future__ import annotations

from datetime import UTC
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp

from recommender.engine.base import check_param
from recommender.tracking import csvformat

__all__ = ["DEFAULT_EVENT_WEIGHTS", "build_interaction_matrix", "encode_ids",
           "parse_timestamp", "read_interactions_csv", "read_items_csv"]

SECONDS_PER_DAY = 86_400.0

#: Default weight of each event type: the built-in events of the CSV format
#: (``rating``: this weight times the event's value).
DEFAULT_EVENT_WEIGHTS = csvformat.BUILTIN_EVENTS


def build_interaction_matrix(user_idx, item_idx, weights=None, timestamps=None, *,
                             n_users: int | None = None, n_items: int | None = None,
                             log_damping: bool = False, half_life_days: float | None = None,
                             reference_time: float | None = None, decay: str = "global",
                             return_timestamps: bool = False):
    """Build a users x items CSR matrix of summed, optionally decayed, weights.

    Parameters
    ----------
    user_idx, item_idx : array-like of int, shape (n_events,)
        Row and column index of every event.
    weights : array-like of float, optional
        Event weight (event-type weights already applied); 1 when omitted.
    timestamps : array-like of float, optional
        Unix seconds of every event; required for decay or ``return_timestamps``.
    n_users, n_items : int, optional
        Matrix shape; defaults to the largest index + 1.
    log_damping : bool
        Replace each summed weight ``w`` by ``log1p(w)`` so repeats count less.
    half_life_days : float, optional
        Multiply each event's weight by ``0.5 ** (age_days / half_life_days)``.
    reference_time : float, optional
        "Now" in unix seconds for ``decay="global"``; default the latest timestamp.
    decay : {"global", "per_user"}
        Age relative to ``reference_time`` or to each user's latest event. Both give the
        same ranking of a user's items; ``per_user`` keeps users who were active long ago
        from fading out of the training data.
    return_timestamps : bool
        Also return a CSR matrix (same pattern) of the latest timestamp per cell.

    Returns
    -------
    scipy.sparse.csr_matrix of float32, and the timestamp matrix if requested.
    """
    users = np.asarray(user_idx, dtype=np.int64).reshape(-1)
    items = np.asarray(item_idx, dtype=np.int64).reshape(-1)
    if users.shape != items.shape:
        raise ValueError(f"user_idx and item_idx must have the same length; "
                         f"got {users.shape[0]} and {items.shape[0]}.")
    w = (np.ones(len(users), dtype=np.float64) if weights is None
         else np.asarray(weights, dtype=np.float64).reshape(-1))
    if w.shape != users.shape:
        raise ValueError(f"weights must have one value per event; got {w.shape[0]}.")
    if (users < 0).any() or (items < 0).any():
        raise ValueError("user_idx and item_idx must be non-negative indices.")
    n_users = int(users.max() + 1 if len(users) else 0) if n_users is None else n_users
    n_items = int(items.max() + 1 if len(items) else 0) if n_items is None else n_items
    check_param("n_users", n_users, Integral, 0)
    check_param("n_items", n_items, Integral, 0)
    if len(users) and (users.max() >= n_users or items.max() >= n_items):
        raise ValueError("an index is out of range for n_users / n_items.")
    check_param("half_life_days", half_life_days, Real, 0, low_open=True, allow_none=True)
    check_param("decay", decay, options={"global", "per_user"})
    ts = None
    if timestamps is not None:
        ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        if ts.shape != users.shape:
            raise ValueError(f"timestamps must have one value per event; got {ts.shape[0]}.")
    if (half_life_days is not None or return_timestamps) and ts is None:
        raise ValueError("timestamps are required for half_life_days / return_timestamps.")
    if half_life_days is not None and len(ts):
        if decay == "per_user":
            ref = np.full(n_users, -np.inf)
            np.maximum.at(ref, users, ts)
            ref = ref[users]
        else:
            ref = ts.max() if reference_time is None else float(reference_time)
        age_days = np.maximum(ref - ts, 0.0) / SECONDS_PER_DAY
        w = w * np.power(0.5, age_days / half_life_days)
    X = sp.csr_matrix((w, (users, items)), shape=(n_users, n_items), dtype=np.float64)
    X.sum_duplicates()
    X.sort_indices()
    if log_damping:
        X.data = np.sign(X.data) * np.log1p(np.abs(X.data))
    X = X.astype(np.float32)
    if not return_timestamps:
        return X
    key = users * n_items + items
    order = np.lexsort((ts, key))
    last = np.r_[key[order][1:] != key[order][:-1], True]
    sel = order[last]  # latest event of every cell, sorted by (user, item)
    T = sp.csr_matrix((ts[sel], (users[sel], items[sel])), shape=(n_users, n_items))
    T.sort_indices()
    return X, T


def encode_ids(ids) -> tuple[np.ndarray, np.ndarray]:
    """Map arbitrary ids to dense indices: returns ``(indices, unique_ids)``."""
    uniques, codes = np.unique(np.asarray(ids), return_inverse=True)
    return codes.astype(np.int64), uniques


def parse_timestamp(value: str, tz=UTC) -> float:
    """Unix seconds from a number string or an ISO 8601 date; NaN for an empty string.

    A naive date is in ``tz`` (``recommender_evaluate`` passes ``TIME_ZONE``); the rule is
    :func:`recommender.tracking.csvformat.parse_timestamp`.
    """
    if not value.strip():
        return float("nan")
    return csvformat.parse_timestamp(value, tz).timestamp()


def _records(path):
    """``(line, row dict)`` of a CSV file with a header; ValueError names the file and line."""
    with csvformat.open_binary(path) as fh:
        rows = csvformat.records(fh)
        try:
            first = next(rows, None)
            names = [] if first is None else [name.strip().lower() for name in first[1]]
            yield 1, names
            for line, row in rows:
                if len(row) != len(names):
                    raise csvformat.CSVFormatError(line, f"expected {len(names)} columns, found {len(row)}")
                yield line, dict(zip(names, row, strict=True))
        except csvformat.CSVFormatError as exc:
            raise ValueError(f"{path}: {exc}") from None


def read_interactions_csv(path, event_weights: dict | None = None,
                          default_weight: float = 1.0, tz=UTC) -> dict:
    """Read ``user_id,item_id,event,value,timestamp`` rows into arrays.

    Parameters
    ----------
    path : str or path-like
        CSV (optionally ``.gz``) with a header row, in the format of
        :mod:`recommender.tracking.csvformat`. ``event``, ``value`` and ``timestamp``
        columns are optional; other columns (``ref``, ``context``) are ignored.
    event_weights : dict, optional
        Weight per event type (default :data:`DEFAULT_EVENT_WEIGHTS`); a ``rating``
        weighs its weight times its value (``csvformat.event_weight``). An event without
        a weight uses its ``value`` when present, else ``default_weight``.
    default_weight : float
        Weight of events without a type or value.
    tz : tzinfo
        Time zone of naive timestamps (default UTC).

    Returns
    -------
    dict with ``user_ids``, ``item_ids`` (str arrays), ``events`` (str array),
    ``weights`` and ``timestamps`` (float arrays; NaN where missing).

    Raises ValueError naming the file and line of a value that ``csvformat.clean_value``
    refuses, an unreadable timestamp or a file that is not CSV text.
    """
    weights_map = DEFAULT_EVENT_WEIGHTS if event_weights is None else event_weights
    users, items, events, weights, stamps = [], [], [], [], []
    records = _records(path)
    _line, names = next(records)
    missing = {"user_id", "item_id"} - set(names)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected "
                         "user_id,item_id,event,value,timestamp.")
    for line, row in records:
        event = (row.get("event") or "").strip()
        try:
            value = csvformat.clean_value(event, row.get("value") or "")
            if event in weights_map:
                weight = csvformat.event_weight(event, value, weights_map)
            else:
                weight = value if value is not None else default_weight
            stamp = parse_timestamp(row.get("timestamp") or "", tz)
        except ValueError as exc:
            raise ValueError(f"{path}: line {line}: {exc}") from None
        users.append(row["user_id"].strip())
        items.append(row["item_id"].strip())
        events.append(event)
        weights.append(weight)
        stamps.append(stamp)
    return {"user_ids": np.array(users, dtype=str), "item_ids": np.array(items, dtype=str),
            "events": np.array(events, dtype=str), "weights": np.array(weights, dtype=float),
            "timestamps": np.array(stamps, dtype=float)}


def read_items_csv(path) -> dict:
    """Read ``item_id,title,description,category,tags`` rows into lists of strings."""
    fields = ("title", "description", "category", "tags")
    out: dict = {"item_ids": []} | {f: [] for f in fields}
    records = _records(path)
    _line, names = next(records)
    if "item_id" not in names:
        raise ValueError(f"{path}: missing column 'item_id'; expected "
                         "item_id,title,description,category,tags.")
    for _line, row in records:
        out["item_ids"].append(row["item_id"].strip())
        for f in fields:
            out[f].append((row.get(f) or "").strip())
    out["item_ids"] = np.array(out["item_ids"], dtype=str)
    return out
