"""Reading recommendations on the request path: precomputed lists, business rules, fallbacks, reasons.

Nothing here loads a model or imports the engine: every function reads the lists
that the refresh task published (:mod:`recommender.serving.published`), from the cache, and
hands them to :class:`recommender.serving.candidates.Pipeline`, which fetches the chosen items
in one query (or from the item cache) and applies the availability and category
filters. See docs/serving.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.contrib.auth.signals import user_logged_in
from django.db.models import Q
from django.db.models.signals import post_delete, post_save

from recommender.conf import rec_settings
from recommender.models import Interaction, ServedList
from recommender.serving import published
from recommender.serving.candidates import (
    ITEMS_TOKEN_KEY,
    Pipeline,
    Recommendation,
    Recommendations,
    category_subject,
)

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.db.models import Model
    from django.http import HttpRequest

__all__ = [
    "Recommendation", "Recommendations", "as_list", "recommend_for", "similar_items", "bought_together", "trending",
    "read_lists", "user_facts", "touch_items", "touch_user", "connect", "ITEMS_TOKEN_KEY",
]

#: Recent history used by the session fallback: rows read, distinct items kept.
HISTORY_ROWS = 60
HISTORY_ITEMS = 10
#: Weight of the k-th most recent item of the history is HISTORY_DECAY ** k.
HISTORY_DECAY = 0.85
#: "There is no such list" is cached this long (seconds), so cold visitors cost no query.
NEGATIVE_TIMEOUT = 300
_NO_LIST = b"null"  # ``published.read`` decodes it to None as well


def user_token_key(user_pk):
    return f"recommender:serving:user:{user_pk}"


def _user_facts_key(user_pk):
    return f"recommender:serving:user-facts:{user_pk}"


# Reading lists ------------------------------------------------------------------


def read_lists(keys):
    """``{(kind, algorithm, subject): items or None}`` for many lists: one cache round trip.

    The items are a :class:`~recommender.serving.published.ServedItems`, a list whose
    ``run`` is the id of the training run that made it. Lists missing from the cache are
    read from the table in one query and cached; a list that does not exist is cached as
    "none" for a few minutes.
    """
    keys = [(kind, algorithm, int(subject)) for kind, algorithm, subject in keys]
    if not keys:
        return {}
    by_cache_key = {published.cache_key(*key): key for key in keys}
    found = published.get_many(list(by_cache_key))
    lists, missing = {}, []
    for cache_key, key in by_cache_key.items():
        raw = found.get(cache_key)
        if raw is None:
            missing.append(key)
        else:
            lists[key] = published.decode(raw)
    if missing:
        wanted = {}
        for kind, algorithm, subject in missing:
            wanted.setdefault((kind, algorithm), []).append(subject)
        condition = Q()
        for (kind, algorithm), subjects in wanted.items():
            condition |= Q(kind=kind, algorithm=algorithm, subject__in=subjects)
        rows = ServedList.objects.filter(condition).values_list("kind", "algorithm", "subject", "items", "run_id")
        stored = {(kind, algorithm, subject): published.ServedItems(items, run)
                  for kind, algorithm, subject, items, run in rows}
        present, absent = {}, {}
        for key in missing:
            items = stored.get(key)
            lists[key] = items
            if items is None:
                absent[published.cache_key(*key)] = _NO_LIST
            else:
                present[published.cache_key(*key)] = published.encode(items, items.run)
        published.cache_set_many(present, rec_settings.CACHE_TIMEOUT)  # skipped if the cache is unreachable
        published.cache_set_many(absent, NEGATIVE_TIMEOUT)
    return lists


def _read_one(kind, algorithm, subject):
    return read_lists([(kind, algorithm, subject)])[(kind, algorithm, int(subject))]


# Who is asking ------------------------------------------------------------------


class UserFacts:
    """Items a user bought and items never to recommend to them again (EXCLUDE_EVENTS)."""

    __slots__ = ("bought", "excluded")

    def __init__(self, bought=(), excluded=()):
        self.bought = set(bought)
        self.excluded = set(excluded)


def fact_events():
    return sorted(set(rec_settings.EXCLUDE_EVENTS or ()) | {"purchase"})


def user_facts(user, request=None):
    """The user's bought and excluded items: memoized on the request, cached until they buy again.

    The cached copy carries the user's token (:func:`touch_user`), so a new purchase
    invalidates it everywhere at once; on a miss it costs one query on the
    ``(user, timestamp)`` index.
    """
    if user is None or not getattr(user, "is_authenticated", False):
        return UserFacts()
    memo = getattr(request, "_recommender_facts", None) if request is not None else None
    if memo is not None and memo[0] == user.pk:
        return memo[1]
    token_key, facts_key = user_token_key(user.pk), _user_facts_key(user.pk)
    found = published.get_many([token_key, facts_key])
    token, cached = found.get(token_key), found.get(facts_key)
    if cached is not None and cached[0] == token:
        facts = UserFacts(cached[1], cached[2])
    else:
        exclude_events = set(rec_settings.EXCLUDE_EVENTS or ())
        bought, excluded = set(), set()
        rows = Interaction.objects.filter(user=user, event__in=fact_events()).values_list("item_id", "event")
        for item_id, event in rows.distinct():
            if event == "purchase":
                bought.add(item_id)
            if event in exclude_events:
                excluded.add(item_id)
        facts = UserFacts(bought, excluded)
        published.cache_set(facts_key, (token, sorted(bought), sorted(excluded)), rec_settings.CACHE_TIMEOUT)
    if request is not None:
        try:
            request._recommender_facts = (user.pk, facts)
        except AttributeError:
            pass
    return facts


def _visitor(request_or_user):
    """``(request, user or None, session key)`` from a request (or a DRF request) or a user."""
    if request_or_user is None:
        return None, None, ""
    if hasattr(request_or_user, "META"):
        request = request_or_user
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return request, user, ""
        session = getattr(request, "session", None)
        key = session.session_key if session is not None and rec_settings.TRACK_ANONYMOUS else None
        return request, None, key or ""
    if getattr(request_or_user, "is_authenticated", False):
        return None, request_or_user, ""
    return None, None, ""


def recent_history(user=None, session_key=""):
    """The visitor's last distinct items, newest first, and the items among them they bought."""
    positive = [event for event, weight in rec_settings.event_weights.items() if weight > 0]
    rows = (Interaction.objects.for_visitor(user, session_key).filter(event__in=positive)
            .order_by("-timestamp").values_list("item_id", "event")[:HISTORY_ROWS])
    recent, bought = [], set()
    for item_id, event in rows:
        if event == "purchase":
            bought.add(item_id)
        if item_id not in recent and len(recent) < HISTORY_ITEMS:
            recent.append(item_id)
    return recent, bought


def _list_source(kind, algorithm, subject, why, only_category=None):
    """One precomputed list; the reason names the list's own ``because`` (for_user) or its subject.

    Its items carry the list's training run."""
    def source(pipeline):
        items = _read_one(kind, algorithm, subject) or []
        run = getattr(items, "run", None)
        if why == "for_user":
            return [(pk, score, because, why, algorithm, only_category, run) for pk, score, because in items]
        reason = subject if why in ("similar", "bought_together") else None
        return [(pk, score, reason, why, algorithm, only_category, run) for pk, score, _because in items]
    return source


def _union_source(kind, algorithm, subjects, why, decay=1.0):
    """Several items' lists merged: scores add up (weighted by the subject's rank), the
    subject that contributed most is the reason, and its list's run is the item's run."""
    def source(pipeline):
        lists = read_lists([(kind, algorithm, pk) for pk in subjects])
        totals, best = {}, {}
        for rank, subject in enumerate(subjects):
            weight = decay ** rank
            items = lists.get((kind, algorithm, int(subject))) or []
            run = getattr(items, "run", None)
            for pk, score, _because in items:
                contribution = float(score) * weight
                totals[pk] = totals.get(pk, 0.0) + contribution
                if pk not in best or contribution > best[pk][0]:
                    best[pk] = (contribution, subject, run)
        ranked = sorted(totals.items(), key=lambda pair: -pair[1])
        return [(pk, score, best[pk][1], why, algorithm, None, best[pk][2]) for pk, score in ranked]
    return source


def _history_sources(user, session_key):
    """Two sources of "history" cards: items similar to the visitor's recent items, then items
    bought with them (their "customers also bought" lists), which reach other categories.
    The recent items are read once, by whichever source is read first."""
    recent = []

    def read(pipeline):
        if not recent:
            items, bought = recent_history(user, session_key)
            recent.append(items)
            pipeline.excluded.update(pipeline.to_pk(pk) for pk in items)  # they just saw them
            pipeline.bought.update(bought)
        return recent[0]

    def similar(pipeline):
        return _union_source("similar", rec_settings.list_algorithm("similar"), read(pipeline), "history",
                             decay=HISTORY_DECAY)(pipeline)

    def bought_with(pipeline):
        return _union_source("bought_together", rec_settings.list_algorithm("bought_together"), read(pipeline),
                             "history", decay=HISTORY_DECAY)(pipeline)
    return [similar, bought_with]


def _fallback_sources(category=None, trending_algorithm=None):
    """Trending, then popular items; for a category its own lists first (published by the
    refresh for every category), then the site's lists filtered to it."""
    trending_algorithm = rec_settings.list_algorithm("trending", trending_algorithm)
    subjects = [0]
    subject = category_subject(category)
    if subject:
        subjects.insert(0, subject)
    sources = []
    for subject in subjects:
        sources += [
            _list_source("trending", trending_algorithm, subject, "trending"),
            _list_source("popular", rec_settings.list_algorithm("popular"), subject, "popular"),
        ]
    return sources


# Public functions ---------------------------------------------------------------


def as_list(items):
    """``items`` as a list: None gives ``[]``, one item (or key) a list of it, an iterable its items."""
    if items is None:
        return []
    if hasattr(items, "pk") or isinstance(items, str) or not hasattr(items, "__iter__"):
        return [items]
    return list(items)


def recommend_for(request_or_user: HttpRequest | AbstractBaseUser | None, n: int = 10, algorithm: str | None = None,
                  category: Any = None, exclude: Iterable[Any] = (),
                  exclude_titles: Iterable[str] = ()) -> Recommendations:
    """Recommendations for a visitor: their own list, then fallbacks until ``n`` are found.

    Sources in order: the user's precomputed list (``algorithm``, default
    ``DEFAULT_ALGORITHM``); items similar to what the visitor (user or anonymous
    session) viewed lately, then items bought with those; trending; popular. Never returns unavailable items,
    items in ``exclude`` (e.g. the cart), items titled as one of ``exclude_titles``
    (case and spacing folded: what earlier blocks of the page showed), or items the user
    bought (``EXCLUDE_EVENTS``). The other functions take ``exclude_titles`` too.
    """
    request, user, session_key = _visitor(request_or_user)
    algorithm = rec_settings.list_algorithm("for_user", algorithm)
    facts = user_facts(user, request)
    sources = []
    if user is not None:
        sources.append(_list_source("for_user", algorithm, user.pk, "for_user"))
    if user is not None or session_key:
        sources += _history_sources(user, session_key)
    sources += _fallback_sources(category)
    pipeline = Pipeline(n, exclude=set(exclude) | facts.excluded, category=category, bought=facts.bought,
                        exclude_titles=exclude_titles)
    return pipeline.run(sources)


def similar_items(item: Model, n: int = 10, algorithm: str | None = None, request: HttpRequest | None = None,
                  category: Any = None, exclude: Iterable[Any] = (),
                  exclude_titles: Iterable[str] = ()) -> Recommendations:
    """Items similar to ``item`` ("Similar to X"), then popular items of its category."""
    algorithm = rec_settings.list_algorithm("similar", algorithm)
    _request, user, _session = _visitor(request)
    facts = user_facts(user, request)
    sources = [_list_source("similar", algorithm, item.pk, "similar")]
    category_field = rec_settings.item_field("category")
    if category_field:
        own = getattr(item, item._meta.get_field(category_field).attname)
        for subject in dict.fromkeys((category_subject(own), 0)):
            sources.append(_list_source("popular", rec_settings.list_algorithm("popular"), subject, "popular",
                                        only_category=own))
    pipeline = Pipeline(n, exclude={item.pk, *exclude} | facts.excluded, category=category,
                        bought=facts.bought, known=[item], exclude_titles=exclude_titles)
    return pipeline.run(sources)


def bought_together(items: Model | Any | Iterable[Model | Any], n: int = 10, algorithm: str | None = None,
                    request: HttpRequest | None = None, category: Any = None,
                    exclude: Iterable[Any] = (), exclude_titles: Iterable[str] = ()) -> Recommendations:
    """Items bought with ``items`` (one item or several, e.g. a cart's), never the items themselves."""
    algorithm = rec_settings.list_algorithm("bought_together", algorithm)
    items = as_list(items)
    if not items:
        return Recommendations()
    instances = [x for x in items if hasattr(x, "pk")]
    pks = [getattr(x, "pk", x) for x in items]
    _request, user, _session = _visitor(request)
    facts = user_facts(user, request)
    sources = [_union_source("bought_together", algorithm, pks, "bought_together")]
    pipeline = Pipeline(n, exclude={*pks, *exclude} | facts.excluded, category=category,
                        bought=facts.bought, known=instances, exclude_titles=exclude_titles)
    return pipeline.run(sources)


def trending(n: int = 10, category: Any = None, request: HttpRequest | None = None, exclude: Iterable[Any] = (),
             algorithm: str | None = None, exclude_titles: Iterable[str] = ()) -> Recommendations:
    """Trending items ("Trending now"), then popular ones ("Popular in <category>").

    With a ``category``, that category's own lists come first, then the site's lists
    filtered to it (before a refresh has published the category's lists).
    """
    _request, user, _session = _visitor(request)
    facts = user_facts(user, request)
    sources = _fallback_sources(category, algorithm)
    pipeline = Pipeline(n, exclude=set(exclude) | facts.excluded, category=category, bought=facts.bought,
                        exclude_titles=exclude_titles)
    return pipeline.run(sources)


# Invalidation ------------------------------------------------------------------------


def _token():
    return f"{time.time_ns():x}"


def touch_items():
    """Items changed (availability, price, title...): pre-rendered responses are rebuilt.

    With the cache unreachable the write waits until it answers again
    (:func:`recommender.serving.published.write`): the item's save goes through.
    """
    published.cache_set(ITEMS_TOKEN_KEY, _token(), None, replay=True)


def touch_user(user_pk):
    """The user bought (or logged in): their cached facts and responses are rebuilt.

    With the cache unreachable the write waits until it answers again: the purchase,
    the tracked event or the login goes through.
    """
    published.cache_set(user_token_key(user_pk), _token(), rec_settings.CACHE_TIMEOUT, replay=True)


def forget_user(user_pk):
    """A deleted user: their served lists, cached lists, facts, stored API responses and
    stored blocks are removed at once (the interactions go by the database's cascade).

    With a cache that cannot list its keys (not Redis), the stored responses and blocks
    are made invalid by the new user token and expire with their timeout.
    """
    ServedList.objects.filter(kind="for_user", subject=int(user_pk)).delete()
    keys = [published.cache_key("for_user", algorithm, user_pk) for algorithm in (rec_settings.ALGORITHMS or {})]
    keys.append(_user_facts_key(user_pk))
    published.write("delete_many", lambda: published.get_cache().delete_many(keys))
    touch_user(user_pk)  # what is stored against the old token no longer matches
    published.delete_matching([f"recommender:api:rec:{user_pk}:*", f"recommender:block:u{user_pk}:*"])


def _user_deleted(sender, instance, **kwargs):
    if instance.pk is not None:
        forget_user(instance.pk)


def _item_changed(sender, **kwargs):
    touch_items()


def _interaction_saved(sender, instance, created, **kwargs):
    if instance.user_id and instance.event in fact_events():
        touch_user(instance.user_id)


def _logged_in(sender, request, user, **kwargs):
    touch_user(user.pk)  # the anonymous history merged into the user may hold purchases


def connect():
    """Connect the invalidation receivers (call from ``AppConfig.ready()``); safe to call twice."""
    post_save.connect(_interaction_saved, sender=Interaction, dispatch_uid="recommender.serving.interaction")
    user_logged_in.connect(_logged_in, dispatch_uid="recommender.serving.login")
    from django.contrib.auth import get_user_model

    post_delete.connect(_user_deleted, sender=get_user_model(), dispatch_uid="recommender.serving.user_deleted")
    try:
        model = rec_settings.item_model()
    except (LookupError, ValueError):  # reported by the system checks
        return
    post_save.connect(_item_changed, sender=model, dispatch_uid="recommender.serving.item_saved")
    post_delete.connect(_item_changed, sender=model, dispatch_uid="recommender.serving.item_deleted")
