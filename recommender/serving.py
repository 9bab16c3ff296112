"""Reading recommendations on the request path: precomputed lists, business rules, fallbacks, reasons.

Nothing here loads a model or imports the engine: every function reads the lists
that the refresh task published (:mod:`recommender.served`), from the cache, and
fetches the chosen items in one query that also applies the availability and
category filters. See docs/serving.md.
"""

import hashlib
import json
import time
from dataclasses import dataclass

from django.contrib.auth.signals import user_logged_in
from django.db.models import Q
from django.db.models.signals import post_delete, post_save
from django.utils.functional import cached_property
from django.utils.translation import gettext as _

from recommender import served
from recommender.conf import rec_settings
from recommender.models import Interaction, ServedList

__all__ = [
    "Recommendation", "Recommendations", "as_list", "recommend_for", "similar_items", "bought_together", "trending",
    "read_lists", "user_facts", "touch_items", "touch_user", "connect",
]

#: Recent history used by the session fallback: rows read, distinct items kept.
HISTORY_ROWS = 60
HISTORY_ITEMS = 10
#: Weight of the k-th most recent item of the history is HISTORY_DECAY ** k.
HISTORY_DECAY = 0.85
#: "There is no such list" is cached this long (seconds), so cold visitors cost no query.
NEGATIVE_TIMEOUT = 300
_NO_LIST = b"null"  # ``served.read`` decodes it to None as well

ITEMS_TOKEN_KEY = "recommender:serving:items"


def user_token_key(user_pk):
    return f"recommender:serving:user:{user_pk}"


def _user_facts_key(user_pk):
    return f"recommender:serving:user-facts:{user_pk}"


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One recommended item, its score in its list, why it is shown and which algorithm chose it."""

    item: object
    score: float
    reason: str
    algorithm: str
    because: object = None
    kind: str = ""  # "for_user", "history", "similar", "bought_together", "trending", "popular"

    @property
    def title(self):
        return _item_title(self.item)

    @property
    def price(self):
        field = rec_settings.item_field("price")
        return getattr(self.item, field, None) if field else None

    @property
    def url(self):
        get_url = getattr(self.item, "get_absolute_url", None)
        return get_url() if get_url else ""

    @property
    def image_url(self):
        """URL of the item's picture (the ``image`` item field), or "" when it has none."""
        field = rec_settings.item_field("image")
        value = getattr(self.item, field, None) if field else None
        if not value:  # None, "" or an empty FieldFile
            return ""
        return getattr(value, "url", None) or str(value)


def _item_title(item):
    field = rec_settings.item_field("title")
    return str(getattr(item, field, "") if field else item)


# Reading lists ------------------------------------------------------------------


def read_lists(keys):
    """``{(kind, algorithm, subject): items or None}`` for many lists: one cache round trip.

    Lists missing from the cache are read from the table in one query and cached;
    a list that does not exist is cached as "none" for a few minutes.
    """
    keys = [(kind, algorithm, int(subject)) for kind, algorithm, subject in keys]
    if not keys:
        return {}
    cache = served.get_cache()
    by_cache_key = {served.cache_key(*key): key for key in keys}
    found = served.get_many(list(by_cache_key))
    lists, missing = {}, []
    for cache_key, key in by_cache_key.items():
        raw = found.get(cache_key)
        if raw is None:
            missing.append(key)
        else:
            lists[key] = json.loads(raw)
    if missing:
        wanted = {}
        for kind, algorithm, subject in missing:
            wanted.setdefault((kind, algorithm), []).append(subject)
        condition = Q()
        for (kind, algorithm), subjects in wanted.items():
            condition |= Q(kind=kind, algorithm=algorithm, subject__in=subjects)
        rows = ServedList.objects.filter(condition).values_list("kind", "algorithm", "subject", "items")
        stored = {(kind, algorithm, subject): items for kind, algorithm, subject, items in rows}
        present, absent = {}, {}
        for key in missing:
            items = stored.get(key)
            lists[key] = items
            if items is None:
                absent[served.cache_key(*key)] = _NO_LIST
            else:
                present[served.cache_key(*key)] = served.encode(items)
        if present:
            cache.set_many(present, timeout=rec_settings.CACHE_TIMEOUT)
        if absent:
            cache.set_many(absent, timeout=NEGATIVE_TIMEOUT)
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
    cache = served.get_cache()
    token_key, facts_key = user_token_key(user.pk), _user_facts_key(user.pk)
    found = served.get_many([token_key, facts_key])
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
        cache.set(facts_key, (token, sorted(bought), sorted(excluded)), timeout=rec_settings.CACHE_TIMEOUT)
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


# Candidates, filters and reasons -----------------------------------------------------


class Recommendations(list):
    """A list of :class:`Recommendation`, with how it was made.

    ``sources_read``: how many candidate sources were read; ``skipped``: the keys of
    candidates passed over because they were excluded (before the list was full).
    :mod:`recommender.block_cache` uses both to tell whether a block can be reused.
    """

    sources_read = 0

    def __init__(self, *args):
        super().__init__(*args)
        self.skipped = set()


class _Pipeline:
    """Walks candidate sources in order and keeps the first ``n`` items that pass the rules.

    A source is a callable ``source(pipeline) -> [(pk, score, because_pk, why, algorithm, only_category)]``;
    sources after the first are read only when the ones before fall short. Candidates
    are fetched in one query per pass (usually one in all).
    """

    def __init__(self, n, exclude=(), category=None, bought=(), known=()):
        self.n = max(0, int(n))
        self.model = rec_settings.item_model()
        self.to_pk = self.model._meta.pk.to_python
        self.excluded = {self.to_pk(getattr(x, "pk", x)) for x in exclude}
        self.bought = set(bought)
        self.known = {obj.pk: obj for obj in known}
        self.category = _category_value(category)
        if self.category is not None and self.category_field is not None and self.category_field.is_relation:
            self.category = self.category_field.target_field.to_python(self.category)  # "3" -> 3

    @cached_property
    def category_field(self):
        name = rec_settings.item_field("category")
        return self.model._meta.get_field(name) if name else None

    def run(self, sources):
        results, chosen = Recommendations(), set()
        pending = list(sources)
        queue = []  # candidates read from sources, not yet fetched
        while len(results) < self.n and (queue or pending):
            # Fetch a window a little larger than what is missing (filters rarely drop
            # more than a few); fetch again if they did. Read the next source only when
            # the queue runs short.
            missing = self.n - len(results)
            window = missing + max(4, missing // 2)
            while pending and len(queue) < missing:
                queue.extend(pending.pop(0)(self))
                results.sources_read += 1
            pool, pooled = [], set()
            while queue and len(pool) < window:
                candidate = queue.pop(0)
                pk = self.to_pk(candidate[0])
                if pk in self.excluded:
                    results.skipped.add(pk)
                    continue
                if pk in chosen or pk in pooled:
                    continue
                pooled.add(pk)
                pool.append((pk, *candidate[1:]))
            if not pool:
                continue
            objects = self._fetch(pool)
            for pk, score, because_pk, why, algorithm, only_category in pool:
                obj = objects.get(pk)
                if pk in self.excluded:
                    results.skipped.add(pk)
                    continue
                if obj is None or not self._eligible(obj, only_category):
                    continue
                because = None
                if because_pk is not None:
                    because_pk = self.to_pk(because_pk)
                    because = self.known.get(because_pk) or objects.get(because_pk)
                results.append(Recommendation(obj, score, self._reason(why, obj, because), algorithm,
                                              because, why))
                chosen.add(pk)
                if len(results) >= self.n:
                    break
        return results

    def _fetch(self, pool):
        """The pool's items plus the items named in reasons: from the item cache, else one query.

        Items come back whether or not they pass the filters; ``run`` checks them
        (``_eligible``), as it does for the items named in reasons.
        """
        reasons = {self.to_pk(c[2]) for c in pool if c[2] is not None} - set(self.known)
        if rec_settings.ITEM_CACHE_TIMEOUT:
            return _cached_items(self, {c[0] for c in pool} | reasons)
        return self._query(pool, reasons)

    def _query(self, pool, reasons):
        """The pool's items that pass the filters, plus the items named in reasons: one query."""
        available = rec_settings.item_field("available")
        condition = Q(pk__in=[c[0] for c in pool])
        if available:
            condition &= Q(**{available: True})
        if self.category is not None and self.category_field is not None:
            condition &= Q(**{self.category_field.attname: self.category})
        if reasons:
            condition |= Q(pk__in=reasons)
        return {obj.pk: obj for obj in self._queryset(condition)}

    def _queryset(self, condition):
        queryset = self.model._default_manager.filter(condition)
        long_text = [name for name in rec_settings.item_field("text") or [] if name]
        if long_text:  # descriptions are not shown in a block: do not transfer them
            queryset = queryset.defer(*long_text)
        if self.category_field is not None and self.category_field.many_to_one:
            queryset = queryset.select_related(self.category_field.name)
        return queryset

    def _eligible(self, obj, only_category):
        # the query may also return items named in reasons: check the rules again here
        available = rec_settings.item_field("available")
        if available and not getattr(obj, available):
            return False
        if self.category_field is not None:
            value = getattr(obj, self.category_field.attname)
            if self.category is not None and value != self.category:
                return False
            if only_category is not None and value != only_category:
                return False
        return True

    def _reason(self, why, item, because):
        if why in ("for_user", "history"):
            if because is None:
                return _("Recommended for you")
            if because.pk in self.bought:
                return _("Because you bought %(title)s") % {"title": _item_title(because)}
            return _("Because you viewed %(title)s") % {"title": _item_title(because)}
        if why == "similar" and because is not None:
            return _("Similar to %(title)s") % {"title": _item_title(because)}
        if why == "bought_together" and because is not None:
            return _("Customers who bought %(title)s also bought this") % {"title": _item_title(because)}
        if why == "popular":
            category = self._category_name(item)
            if category:
                return _("Popular in %(category)s") % {"category": category}
            return _("Popular right now")
        return _("Trending now")

    def _category_name(self, item):
        field = self.category_field
        if field is None:
            return ""
        value = getattr(item, field.name, None)
        return str(value) if value is not None else ""


# Item cache -----------------------------------------------------------------------------
#
# Blocks and API responses show a handful of items; rendering one that is not stored yet
# fetched them with a query (about 0.7 ms on PostgreSQL). Items are cached as model
# instances (pickled by the cache), each stored with the items token it was read under:
# any item's save or delete (``touch_items``) retires them all. The key names the model's
# fields, so a deploy that changes the model never reads an older layout.

_ITEM_PREFIXES = {}


def _item_prefix(model):
    prefix = _ITEM_PREFIXES.get(model)
    if prefix is None:
        fields = ",".join(f.attname for f in model._meta.concrete_fields)
        layout = f"{model._meta.label}|{fields}|{rec_settings.item_field('text')}|{rec_settings.item_field('category')}"
        digest = hashlib.blake2b(layout.encode(), digest_size=6).hexdigest()
        prefix = _ITEM_PREFIXES[model] = f"recommender:item:{digest}:"
    return prefix


def _cached_items(pipeline, pks):
    """``{pk: item}`` of ``pks`` (unavailable ones included): one MGET, one query for misses."""
    if not pks:
        return {}
    prefix = _item_prefix(pipeline.model)
    keys = {pk: f"{prefix}{pk}" for pk in pks}
    found = served.get_many([ITEMS_TOKEN_KEY, *keys.values()])
    token = found.get(ITEMS_TOKEN_KEY)
    objects, missing = {}, []
    for pk, key in keys.items():
        entry = found.get(key)
        if entry is not None and entry[0] == token:
            if entry[1] is not None:
                objects[pk] = entry[1]
        else:
            missing.append(pk)
    if missing:
        fresh = {obj.pk: obj for obj in pipeline._queryset(Q(pk__in=missing))}
        objects.update(fresh)
        # deleted items are remembered as None, so they cost no query either
        served.get_cache().set_many({keys[pk]: (token, fresh.get(pk)) for pk in missing},
                                    timeout=rec_settings.ITEM_CACHE_TIMEOUT)
    return objects


def _category_value(category):
    """A category instance, key or raw value as the value stored on items (or None)."""
    if category is None or category == "":
        return None
    return getattr(category, "pk", category)


def _list_source(kind, algorithm, subject, why, only_category=None):
    """One precomputed list; the reason names the list's own ``because`` (for_user) or its subject."""
    def source(pipeline):
        items = _read_one(kind, algorithm, subject) or []
        if why == "for_user":
            return [(pk, score, because, why, algorithm, only_category) for pk, score, because in items]
        reason = subject if why in ("similar", "bought_together") else None
        return [(pk, score, reason, why, algorithm, only_category) for pk, score, _because in items]
    return source


def _union_source(kind, algorithm, subjects, why, decay=1.0):
    """Several items' lists merged: scores add up (weighted by the subject's rank), the
    subject that contributed most is the reason."""
    def source(pipeline):
        lists = read_lists([(kind, algorithm, pk) for pk in subjects])
        totals, best = {}, {}
        for rank, subject in enumerate(subjects):
            weight = decay ** rank
            for pk, score, _because in lists.get((kind, algorithm, int(subject))) or []:
                contribution = float(score) * weight
                totals[pk] = totals.get(pk, 0.0) + contribution
                if pk not in best or contribution > best[pk][0]:
                    best[pk] = (contribution, subject)
        ranked = sorted(totals.items(), key=lambda pair: -pair[1])
        return [(pk, score, best[pk][1], why, algorithm, None) for pk, score in ranked]
    return source


def _history_source(user, session_key):
    def source(pipeline):
        recent, bought = recent_history(user, session_key)
        pipeline.excluded.update(pipeline.to_pk(pk) for pk in recent)  # they just saw them
        pipeline.bought.update(bought)
        return _union_source("similar", rec_settings.SIMILAR_ALGORITHM, recent, "history",
                             decay=HISTORY_DECAY)(pipeline)
    return source


def _fallback_sources():
    return [
        _list_source("trending", rec_settings.TRENDING_ALGORITHM, 0, "trending"),
        _list_source("popular", rec_settings.POPULAR_ALGORITHM, 0, "popular"),
    ]


# Public functions ---------------------------------------------------------------


def as_list(items):
    """``items`` as a list: None gives ``[]``, one item (or key) a list of it, an iterable its items."""
    if items is None:
        return []
    if hasattr(items, "pk") or isinstance(items, str) or not hasattr(items, "__iter__"):
        return [items]
    return list(items)


def recommend_for(request_or_user, n=10, algorithm=None, category=None, exclude=()):
    """Recommendations for a visitor: their own list, then fallbacks until ``n`` are found.

    Sources in order: the user's precomputed list (``algorithm``, default
    ``DEFAULT_ALGORITHM``); items similar to what the visitor (user or anonymous
    session) viewed lately; trending; popular. Never returns unavailable items,
    items in ``exclude`` (e.g. the cart), or items the user bought (``EXCLUDE_EVENTS``).
    """
    request, user, session_key = _visitor(request_or_user)
    algorithm = algorithm or rec_settings.DEFAULT_ALGORITHM
    facts = user_facts(user, request)
    sources = []
    if user is not None:
        sources.append(_list_source("for_user", algorithm, user.pk, "for_user"))
    if user is not None or session_key:
        sources.append(_history_source(user, session_key))
    sources += _fallback_sources()
    pipeline = _Pipeline(n, exclude=set(exclude) | facts.excluded, category=category, bought=facts.bought)
    return pipeline.run(sources)


def similar_items(item, n=10, algorithm=None, request=None, category=None, exclude=()):
    """Items similar to ``item`` ("Similar to X"), then popular items of its category."""
    algorithm = algorithm or rec_settings.SIMILAR_ALGORITHM
    _request, user, _session = _visitor(request)
    facts = user_facts(user, request)
    sources = [_list_source("similar", algorithm, item.pk, "similar")]
    category_field = rec_settings.item_field("category")
    if category_field:
        own = item._meta.get_field(category_field)
        sources.append(_list_source("popular", rec_settings.POPULAR_ALGORITHM, 0, "popular",
                                    only_category=getattr(item, own.attname)))
    pipeline = _Pipeline(n, exclude={item.pk, *exclude} | facts.excluded, category=category,
                         bought=facts.bought, known=[item])
    return pipeline.run(sources)


def bought_together(items, n=10, algorithm=None, request=None, category=None, exclude=()):
    """Items bought with ``items`` (one item or several, e.g. a cart's), never the items themselves."""
    algorithm = algorithm or rec_settings.BOUGHT_TOGETHER_ALGORITHM
    items = as_list(items)
    if not items:
        return Recommendations()
    instances = [x for x in items if hasattr(x, "pk")]
    pks = [getattr(x, "pk", x) for x in items]
    _request, user, _session = _visitor(request)
    facts = user_facts(user, request)
    sources = [_union_source("bought_together", algorithm, pks, "bought_together")]
    pipeline = _Pipeline(n, exclude={*pks, *exclude} | facts.excluded, category=category,
                         bought=facts.bought, known=instances)
    return pipeline.run(sources)


def trending(n=10, category=None, request=None, exclude=(), algorithm=None):
    """Trending items ("Trending now"), then popular ones ("Popular in <category>")."""
    _request, user, _session = _visitor(request)
    facts = user_facts(user, request)
    sources = _fallback_sources()
    if algorithm:
        sources[0] = _list_source("trending", algorithm, 0, "trending")
    pipeline = _Pipeline(n, exclude=set(exclude) | facts.excluded, category=category, bought=facts.bought)
    return pipeline.run(sources)


# Invalidation ------------------------------------------------------------------------


def _token():
    return f"{time.time_ns():x}"


def touch_items():
    """Items changed (availability, price, title...): pre-rendered responses are rebuilt."""
    served.get_cache().set(ITEMS_TOKEN_KEY, _token(), timeout=None)


def touch_user(user_pk):
    """The user bought (or logged in): their cached facts and responses are rebuilt."""
    served.get_cache().set(user_token_key(user_pk), _token(), timeout=rec_settings.CACHE_TIMEOUT)


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
    try:
        model = rec_settings.item_model()
    except (LookupError, ValueError):  # reported by the system checks
        return
    post_save.connect(_item_changed, sender=model, dispatch_uid="recommender.serving.item_saved")
    post_delete.connect(_item_changed, sender=model, dispatch_uid="recommender.serving.item_deleted")
