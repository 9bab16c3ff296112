"""Computing the served lists from the active model of an algorithm, in chunks.

``plan(algorithm)`` splits the work into chunks (users for "recommended for
you", items for "similar" / "customers also bought"); each chunk is one task, so
several workers share a refresh. A chunk of a run that is no longer active is
skipped, so a late chunk never overwrites a newer version's lists.
"""

import numpy as np

from recommender.conf import rec_settings
from recommender.engine.neighbors import varied_reasons
from recommender.models import Interaction, ServedList, TrainingRun
from recommender.serving import published
from recommender.training import artifacts

Kind = ServedList.Kind
#: Items per list that get a "because" item; blocks show at most about ten.
EXPLAIN_TOP = 10
#: Contributors considered per card, and the share of the largest contribution another
#: contributor must reach to be named instead (to vary the reasons of a list).
REASON_CANDIDATES = 3
REASON_TOLERANCE = 0.5
_loaded = {}  # per worker process: algorithm -> (run id, artifact)


def kinds_for(algorithm):
    s = rec_settings
    if algorithm == s.TRENDING_ALGORITHM:
        return [Kind.TRENDING]
    if algorithm == s.POPULAR_ALGORITHM:
        return [Kind.POPULAR]
    if algorithm == s.BOUGHT_TOGETHER_ALGORITHM:
        return [Kind.BOUGHT_TOGETHER]
    return [Kind.FOR_USER, Kind.SIMILAR]


def load_run(run):
    cached = _loaded.get(run.algorithm)
    if cached and cached[0] == run.pk:
        return cached[1]
    artifact = artifacts.load(run.artifact_path)
    _loaded[run.algorithm] = (run.pk, artifact)
    return artifact


def plan(algorithm):
    """``(run id, [(kind, start, stop), ...])`` for the active run, or ``(None, [])``."""
    run = TrainingRun.objects.filter(algorithm=algorithm, is_active=True).first()
    if run is None:
        return None, []
    size = rec_settings.REFRESH_CHUNK_SIZE
    chunks = []
    for kind in kinds_for(algorithm):
        if kind in (Kind.TRENDING, Kind.POPULAR):
            chunks.append((kind, 0, 1))
            continue
        total = run.n_users if kind == Kind.FOR_USER else run.n_items
        chunks += [(kind, start, min(start + size, total)) for start in range(0, total or 0, size)]
    return run.pk, chunks


def unavailable_indices(item_ids):
    """Column indices of items that are inactive or deleted now."""
    model = rec_settings.item_model()
    field = rec_settings.item_field("available")
    qs = model._default_manager.all()
    if field:
        qs = qs.filter(**{field: True})
    available = np.fromiter(qs.values_list("pk", flat=True).iterator(chunk_size=10_000), dtype=np.int64)
    return np.flatnonzero(~np.isin(item_ids, available))


def excluded_by_events(user_pks, item_ids):
    """``{user pk: set of column indices}`` the users must not get again (EXCLUDE_EVENTS)."""
    events = rec_settings.EXCLUDE_EVENTS or []
    out = {}
    if not events:
        return out
    position = {int(pk): i for i, pk in enumerate(item_ids)}
    rows = Interaction.objects.filter(user_id__in=[int(u) for u in user_pks], event__in=events)
    for user, item in rows.values_list("user_id", "item_id").iterator(chunk_size=10_000):
        if item in position:
            out.setdefault(user, set()).add(position[item])
    return out


def refresh_chunk(algorithm, run_id, kind, start, stop):
    """Compute and publish one chunk; returns the number of lists written (0 if stale)."""
    run = TrainingRun.objects.filter(pk=run_id, algorithm=algorithm, is_active=True).first()
    if run is None:
        return 0
    model, user_ids, item_ids, matrix = load_run(run)
    n = rec_settings.SERVED_LIST_LENGTH
    blocked = unavailable_indices(item_ids)
    lists = {}
    if kind in (Kind.TRENDING, Kind.POPULAR):
        idx, scores = model.recommend(0, _empty_row(matrix.shape[1]), n=n, filter_seen=False,
                                      filter_items=blocked)
        lists[0] = _items(idx, scores, item_ids)
    elif kind == Kind.FOR_USER:
        users = np.arange(start, stop)
        excluded = excluded_by_events(user_ids[users], item_ids)
        idx, scores = model.recommend_batch(users, matrix[users], n=n + 10, filter_seen=True,
                                            filter_items=blocked)
        for row, user in enumerate(users):
            skip = excluded.get(int(user_ids[user]), ())
            picks = [(i, s) for i, s in zip(idx[row], scores[row], strict=True) if i >= 0 and i not in skip][:n]
            because = _because(model, user, matrix, [i for i, _s in picks[:EXPLAIN_TOP]], item_ids)
            lists[int(user_ids[user])] = [
                [int(item_ids[i]), round(float(s), 6), because[rank] if rank < len(because) else None]
                for rank, (i, s) in enumerate(picks)]
    else:
        for item in range(start, stop):
            if item in blocked:
                continue
            idx, scores = model.similar_items(item, n=n, filter_items=blocked)
            items = _items(idx, scores, item_ids, because=int(item_ids[item]))
            if items:
                lists[int(item_ids[item])] = items
    published.publish(kind, algorithm, lists, run=run)
    return len(lists)


def _empty_row(n_items):
    import scipy.sparse as sp

    return sp.csr_matrix((1, n_items), dtype=np.float32)


def _items(idx, scores, item_ids, because=None):
    return [[int(item_ids[i]), round(float(s), 6), because]
            for i, s in zip(np.ravel(idx), np.ravel(scores), strict=True) if i >= 0 and np.isfinite(s)]


def _because(model, user, matrix, items, item_ids):
    """For each of ``items``, a history item that contributed most to it (None if unknown).

    Every history item counts once (a product bought 24 times would otherwise be the
    largest contributor to every card), and among the items that gave at least
    ``REASON_TOLERANCE`` of the largest contribution, the one named least so far in the
    list is chosen (``engine.neighbors.varied_reasons``), so a list built from several
    history items names several of them.
    """
    if not items:
        return []
    row = matrix[int(user)].copy()
    row.data[:] = 1.0
    try:
        reasons = model.explain_many(int(user), row, items, n=REASON_CANDIDATES)
    except (NotImplementedError, ValueError):
        return [None] * len(items)
    return [None if r is None else int(item_ids[r]) for r in varied_reasons(reasons, REASON_TOLERANCE)]
