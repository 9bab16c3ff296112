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


# One user's list, re-scored after what they did (recommender.training.follow) ------------

def stores_user_state(model):
    """Whether the model scores a training user from what it learned about them (ALS's user
    factors) instead of from the row it is given. A changed history is then folded in: the
    user is scored as a new user (index ``n_users_``) from their current row."""
    engines = getattr(model, "engines_", None) or [model]
    return any(hasattr(engine, "user_factors_") for engine in engines)


def history_rows(user_pks, item_ids):
    """``{user pk: 1 x items CSR row}`` of the users' current histories, weighted as the
    training weighs them (:func:`recommender.training.dataset.load_interactions`); a user
    with no counted interaction on the model's items has no row.

    With HALF_LIFE_DAYS the ages count from the latest of these users' events, not from the
    run's data cutoff: every weight of a user is scaled alike, which keeps the order of an
    item-based engine's scores.
    """
    from recommender.training.dataset import load_interactions

    qs = Interaction.objects.filter(user_id__in=[int(pk) for pk in user_pks])
    data = load_interactions(qs, item_ids=item_ids, half_life_days=rec_settings.HALF_LIFE_DAYS,
                             log_damping=rec_settings.LOG_DAMPING)
    return {int(pk): data.matrix[row] for row, pk in enumerate(data.user_ids)}


def current_rows(run, model, user_pks, item_ids, rows, indices):
    """``(rows, indices)`` to score training users from: their training rows, except for the
    users with counted interactions after the run's data cutoff, whose rows are read again
    (a refresh then never takes back what following them published) and who are folded in
    when the model keeps user state (:func:`stores_user_state`)."""
    indices = np.array(indices, dtype=np.int64)
    if run.data_cutoff is None or not len(user_pks):
        return rows, indices
    counted = [event for event, weight in rec_settings.event_weights.items() if weight]
    changed = set(Interaction.objects.filter(user_id__in=[int(pk) for pk in user_pks], event__in=counted,
                                             timestamp__gt=run.data_cutoff)
                  .values_list("user_id", flat=True).distinct())
    if not changed:
        return rows, indices
    import scipy.sparse as sp

    fresh = history_rows(changed, item_ids)
    empty = _empty_row(len(item_ids))
    stacked = [fresh.get(int(pk), empty) if int(pk) in changed else rows[i] for i, pk in enumerate(user_pks)]
    if stores_user_state(model):
        indices[[i for i, pk in enumerate(user_pks) if int(pk) in changed]] = model.n_users_
    return sp.vstack(stacked, format="csr", dtype=np.float32), indices


#: The availability a process read, kept until an item is saved or deleted (the serving's
#: item token changes) and at most this many seconds.
UNAVAILABLE_SECONDS = 60
_unavailable = {}  # per worker process: run id -> (item token, monotonic time, indices)


def unavailable_now(run, item_ids):
    """:func:`unavailable_indices` of a run's items, read again only after an item changed
    (one cache read per call instead of a query over the whole catalog)."""
    import time

    from recommender.serving.candidates import ITEMS_TOKEN_KEY

    token = published.get_many([ITEMS_TOKEN_KEY]).get(ITEMS_TOKEN_KEY)
    kept = _unavailable.get(run.pk)
    if kept and kept[0] == token and time.monotonic() - kept[1] < UNAVAILABLE_SECONDS:
        return kept[2]
    indices = unavailable_indices(item_ids)
    _unavailable.clear()
    _unavailable[run.pk] = (token, time.monotonic(), indices)
    return indices


def refresh_user(algorithm, user_pk):
    """Re-score one user's "recommended for you" list of ``algorithm`` from their current
    history with its active run, and publish it.

    The same list :func:`refresh_chunk` computes, from the user's row read now: the same
    exclusions (EXCLUDE_EVENTS, unavailable items, seen items) and reasons. A user the
    model did not see in training is scored from their row as a new user (every engine
    scores a new user's row; ALS folds it in). Returns the list's length, or None when
    nothing was published: no active run, no "for you" lists for the algorithm, or no
    counted history on the model's items (the serving's fallbacks stay).
    """
    run = TrainingRun.objects.filter(algorithm=algorithm, is_active=True).first()
    if run is None or Kind.FOR_USER not in kinds_for(algorithm):
        return None
    model, user_ids, item_ids, _matrix = load_run(run)
    row = history_rows([user_pk], item_ids).get(int(user_pk))
    if row is None:
        return None
    position = int(np.searchsorted(user_ids, int(user_pk)))
    known = position < len(user_ids) and int(user_ids[position]) == int(user_pk)
    index = position if known and not stores_user_state(model) else model.n_users_
    n = rec_settings.SERVED_LIST_LENGTH
    idx, scores = model.recommend(index, row, n=n + 10, filter_seen=True,
                                  filter_items=unavailable_now(run, item_ids))
    skip = excluded_by_events([user_pk], item_ids).get(int(user_pk), ())
    items = _user_list(model, index, row, idx, scores, skip, item_ids, n)
    published.publish(Kind.FOR_USER, algorithm, {int(user_pk): items}, run=run)
    return len(items)


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
        # the whole ranking once: its first n are the site's list, and each category's
        # first n (scores above 0) its own list, so a small category gets a full block
        idx, scores = model.recommend(0, _empty_row(matrix.shape[1]), n=matrix.shape[1], filter_seen=False,
                                      filter_items=blocked)
        lists[0] = _items(idx[:n], scores[:n], item_ids)
        lists.update(_category_lists(idx, scores, item_ids, n))
    elif kind == Kind.FOR_USER:
        users = np.arange(start, stop)
        pks = user_ids[users]
        rows, scored_as = current_rows(run, model, pks, item_ids, matrix[users], users)
        excluded = excluded_by_events(pks, item_ids)
        idx, scores = model.recommend_batch(scored_as, rows, n=n + 10, filter_seen=True, filter_items=blocked)
        for row, pk in enumerate(pks):
            lists[int(pk)] = _user_list(model, scored_as[row], rows[row], idx[row], scores[row],
                                        excluded.get(int(pk), ()), item_ids, n)
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


def _category_lists(idx, scores, item_ids, n):
    """``{category subject: items}``: the first ``n`` items of each category in a ranking."""
    from recommender.serving.candidates import category_subject

    field = rec_settings.item_field("category")
    if not field:
        return {}
    model = rec_settings.item_model()
    attname = model._meta.get_field(field).attname
    rows = model._default_manager.exclude(**{f"{attname}__isnull": True}).values_list("pk", attname)
    subject_of = {int(pk): category_subject(value) for pk, value in rows.iterator(chunk_size=10_000)}
    lists = {}
    for i, score in zip(np.ravel(idx), np.ravel(scores), strict=True):
        if i < 0 or not np.isfinite(score) or score <= 0:
            continue
        pk = int(item_ids[i])
        subject = subject_of.get(pk)
        if not subject:
            continue
        items = lists.setdefault(subject, [])
        if len(items) < n:
            items.append([pk, round(float(score), 6), None])
    return lists


def _empty_row(n_items):
    import scipy.sparse as sp

    return sp.csr_matrix((1, n_items), dtype=np.float32)


def _items(idx, scores, item_ids, because=None):
    return [[int(item_ids[i]), round(float(s), 6), because]
            for i, s in zip(np.ravel(idx), np.ravel(scores), strict=True) if i >= 0 and np.isfinite(s)]


def _user_list(model, user, row, idx, scores, skip, item_ids, n):
    """A user's list from their ranked candidates: the first ``n`` not in ``skip`` (indices
    never to show them again), each with its reason. Every item is explained, not only
    the first ten: a category page's block is filled from further down the list."""
    picks = [(i, s) for i, s in zip(idx, scores, strict=True) if i >= 0 and i not in skip][:n]
    reasons = _because(model, user, row, [i for i, _s in picks], item_ids)
    return [[int(item_ids[i]), round(float(s), 6), because]
            for (i, s), because in zip(picks, reasons, strict=True)]


def _because(model, user, row, items, item_ids):
    """For each of ``items``, a history item of ``row`` (the user's 1 x items row) that
    contributed most to it (None if unknown).

    Every history item counts once (a product bought 24 times would otherwise be the
    largest contributor to every card), and among the items that gave at least
    ``REASON_TOLERANCE`` of the largest contribution, the one named least so far in the
    list is chosen (``engine.neighbors.varied_reasons``), so a list built from several
    history items names several of them.
    """
    if not items:
        return []
    row = row.copy()
    row.data[:] = 1.0
    try:
        reasons = model.explain_many(int(user), row, items, n=REASON_CANDIDATES)
    except (NotImplementedError, ValueError):
        return [None] * len(items)
    return [None if r is None else int(item_ids[r]) for r in varied_reasons(reasons, REASON_TOLERANCE)]
