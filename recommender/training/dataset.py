"""The one bridge between the ORM and numpy: interaction rows -> CSR matrix + id maps.

Rows are streamed from the database in time order as plain tuples (never as
model instances) and collected into compact numpy arrays chunk by chunk, so a
table of 10M interactions costs a few hundred MB, not gigabytes of objects.
"""

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from django.db import connections

from recommender.conf import rec_settings
from recommender.engine.data import build_interaction_matrix
from recommender.models import Interaction
from recommender.tracking.csvformat import MAX_ABS_WEIGHT, event_weight

logger = logging.getLogger(__name__)


@dataclass
class InteractionData:
    """A users x items matrix and the database keys of its rows and columns."""

    matrix: sp.csr_matrix
    user_ids: np.ndarray  # row index -> user primary key
    item_ids: np.ndarray  # column index -> item primary key
    n_interactions: int
    cutoff: float | None  # unix seconds of the latest interaction used
    timestamps: sp.csr_matrix | None = None  # latest unix time per cell, same pattern as matrix
    skipped: int = 0  # rows left out because their weight is not finite or beyond ±MAX_ABS_WEIGHT

    def user_index(self, user_pk):
        """Row of a user, or None for a user with no interactions."""
        pos = np.searchsorted(self.user_ids, user_pk)
        return int(pos) if pos < len(self.user_ids) and self.user_ids[pos] == user_pk else None

    def item_index(self, item_pk):
        pos = np.searchsorted(self.item_ids, item_pk)
        return int(pos) if pos < len(self.item_ids) and self.item_ids[pos] == item_pk else None


def interaction_arrays(queryset=None, *, chunk_size=100_000, event_weights=None):
    """Stream ``(user pk, item pk, weight, unix time)`` arrays of users' interactions, in time order.

    A rating's weight is the event weight times the rating; other events use
    their weight alone (repeats add up in the matrix): ``csvformat.event_weight``, which the
    PostgreSQL query computes in SQL. Weights are float64 here, so a value too large for the
    float32 matrix is still seen as such by :func:`load_interactions`.
    """
    weights = event_weights or rec_settings.event_weights
    qs = Interaction.objects.all() if queryset is None else queryset
    # Zero-weight events (impressions) are records, not signals: they make no matrix cell.
    counted = [event for event, weight in weights.items() if weight]
    qs = qs.filter(user__isnull=False, event__in=counted)
    if connections[qs.db].vendor == "postgresql":
        return _arrays_postgresql(qs, weights, chunk_size)
    rows = (qs.order_by("timestamp", "id").values_list("user_id", "item_id", "event", "value", "timestamp")
            .iterator(chunk_size=chunk_size))
    users, items, w, ts = [], [], [], []
    parts = []

    def pack():
        parts.append((np.array(users, dtype=np.int64), np.array(items, dtype=np.int64),
                      np.array(w, dtype=np.float64), np.array(ts, dtype=np.float64)))
        for column in (users, items, w, ts):
            column.clear()

    for user_id, item_id, event, value, when in rows:
        weight = event_weight(event, value, weights)
        users.append(user_id)
        items.append(item_id)
        w.append(weight)
        ts.append(when.timestamp())
        if len(users) >= chunk_size:
            pack()
    pack()
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def _arrays_postgresql(qs, weights, chunk_size):
    """The same arrays with the weights and times computed by PostgreSQL, fetched as plain
    numbers from a server-side cursor (about ten times faster than model rows)."""
    inner, params = qs.order_by().values_list("user_id", "item_id", "event", "value", "timestamp", "id") \
        .query.sql_with_params()
    cases = " ".join("WHEN %s THEN %s" for _e in weights)
    sql = (f"SELECT q.user_id, q.item_id, (CASE q.event {cases} ELSE 0 END) * "
           f"(CASE WHEN q.event = 'rating' AND q.value IS NOT NULL THEN q.value ELSE 1 END), "
           f"EXTRACT(EPOCH FROM q.timestamp)::float8 FROM ({inner}) q ORDER BY q.timestamp, q.id")
    args = [x for event, weight in weights.items() for x in (event, float(weight))] + list(params)
    connection = connections[qs.db]
    parts = []
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, args)
        while rows := cursor.fetchmany(chunk_size):
            parts.append(np.array(rows, dtype=np.float64))
    block = np.concatenate(parts) if parts else np.empty((0, 4))
    return (block[:, 0].astype(np.int64), block[:, 1].astype(np.int64), block[:, 2], block[:, 3])


def load_interactions(queryset=None, *, item_ids=None, half_life_days=None, log_damping=False,
                      with_timestamps=False, chunk_size=100_000):
    """Build the training matrix from the database.

    Parameters
    ----------
    queryset : Interaction queryset, optional
        Which interactions to use (default: all of known users).
    item_ids : array of item primary keys, optional
        The matrix columns. Default: every item of the item model, so items with
        no interactions yet still have a column (for content-based scores).
    half_life_days, log_damping :
        Recency decay and repeat damping, see ``engine.data.build_interaction_matrix``.
    with_timestamps : bool
        Also build the matrix of each cell's latest time (for trending and splits).
    """
    users, items, weights, stamps = interaction_arrays(queryset, chunk_size=chunk_size)
    # Bad values are refused where they enter (csvformat.clean_value); rows stored before
    # that, or written around it, must not turn the matrix into NaN or infinity.
    usable = np.isfinite(weights) & (np.abs(weights) <= MAX_ABS_WEIGHT)
    skipped = int(len(usable) - usable.sum())
    if skipped:
        logger.warning("Training data: skipped %d interaction(s) whose weight is not finite or beyond "
                       "±%g (a value that is not a number, infinite or absurd).", skipped, MAX_ABS_WEIGHT)
        users, items, weights, stamps = users[usable], items[usable], weights[usable], stamps[usable]
    if item_ids is None:
        item_ids = np.fromiter(rec_settings.item_model()._default_manager.order_by("pk")
                               .values_list("pk", flat=True).iterator(chunk_size=chunk_size), dtype=np.int64)
    item_ids = np.unique(np.asarray(item_ids, dtype=np.int64))
    known = np.isin(items, item_ids)
    users, items, weights, stamps = users[known], items[known], weights[known], stamps[known]
    user_ids, user_idx = np.unique(users, return_inverse=True)
    item_idx = np.searchsorted(item_ids, items)
    with_timestamps = with_timestamps and len(stamps) > 0
    built = build_interaction_matrix(
        user_idx, item_idx, weights, stamps if len(stamps) else None,
        n_users=len(user_ids), n_items=len(item_ids),
        log_damping=log_damping, half_life_days=half_life_days, return_timestamps=with_timestamps,
    )
    matrix, timestamps = built if with_timestamps else (built, None)
    # A cell whose events add up to nothing or less (a cart add taken back) is no interaction.
    dropped = matrix.data <= 0
    if dropped.any():
        matrix.data[dropped] = 0
        matrix.eliminate_zeros()
        if timestamps is not None:  # same pattern, same order
            timestamps.data[dropped] = 0
            timestamps.eliminate_zeros()
    return InteractionData(matrix=matrix, user_ids=user_ids, item_ids=item_ids,
                           n_interactions=int(len(users)),
                           cutoff=float(stamps.max()) if len(stamps) else None, timestamps=timestamps,
                           skipped=skipped)


#: Events whose items make a basket ("customers also bought") and whose items are compared
#: by co-viewing ("similar items").
BASKET_EVENTS = ("purchase",)
VIEW_EVENTS = ("view", "click")
DAY = 86_400


def _grouped_matrix(data, events, by_day):
    """Rows grouped per user (and UTC day if ``by_day``) or per anonymous session:
    ``(0/1 groups x items matrix, interaction-matrix row of each group's user or -1)``."""
    rows = (Interaction.objects.filter(event__in=events).order_by()
            .values_list("user_id", "session_key", "item_id", "timestamp").iterator(chunk_size=100_000))
    users, sessions, items, days = [], [], [], []
    for user, session, item, when in rows:
        users.append(-1 if user is None else user)
        sessions.append(session if user is None else "")
        items.append(item)
        days.append(int(when.timestamp() // DAY) if by_day else 0)
    users, items, days = (np.asarray(a, dtype=np.int64) for a in (users, items, days))
    sessions = np.asarray(sessions, dtype=object)
    columns = np.searchsorted(data.item_ids, items)
    known = (columns < len(data.item_ids)) & (data.item_ids[np.minimum(columns, len(data.item_ids) - 1)] == items)
    known &= (users >= 0) | (sessions != "")
    users, sessions, columns, days = users[known], sessions[known], columns[known], days[known]
    member = users >= 0
    user_keys, user_groups = np.unique(np.column_stack([users[member], days[member]]).reshape(-1, 2),
                                       axis=0, return_inverse=True)
    session_keys, session_groups = np.unique(sessions[~member].astype(str), return_inverse=True)
    groups = np.empty(len(users), dtype=np.int64)
    groups[member] = user_groups.ravel()
    groups[~member] = len(user_keys) + session_groups.ravel()
    positions = np.searchsorted(data.user_ids, user_keys[:, 0]) if len(user_keys) else np.empty(0, np.int64)
    found = (positions < len(data.user_ids)) & (
        data.user_ids[np.minimum(positions, max(len(data.user_ids) - 1, 0))] == user_keys[:, 0]) \
        if len(data.user_ids) else np.zeros(len(positions), bool)
    owners = np.concatenate([np.where(found, positions, -1), np.full(len(session_keys), -1)]).astype(np.int64)
    M = sp.csr_matrix((np.ones(len(groups), np.float32), (groups, columns)),
                      shape=(len(owners), len(data.item_ids)))
    M.sum_duplicates()
    M.data[:] = 1.0
    return M, owners


def basket_matrix(data):
    """Baskets x items: the purchases of one anonymous session, or of one user on one (UTC) day.

    ``Interaction.ref`` is not used: the CSV importer sets it only on rows that repeat another
    (an order *or line* id, so it does not name a whole order).
    """
    return _grouped_matrix(data, BASKET_EVENTS, by_day=True)


def view_matrix(data):
    """Visitors x items: the items each user or anonymous session viewed or clicked."""
    return _grouped_matrix(data, VIEW_EVENTS, by_day=False)


def engine_inputs(model, data):
    """The extra ``fit`` keyword arguments an engine asks for in its ``fit_inputs``."""
    wanted = getattr(model, "fit_inputs", ())
    extras = {}
    if "baskets" in wanted:
        extras["baskets"], extras["basket_users"] = basket_matrix(data)
    if "views" in wanted:
        extras["views"], extras["view_users"] = view_matrix(data)
    return extras
