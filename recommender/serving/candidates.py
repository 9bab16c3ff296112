"""Candidates, filters and reasons: the pipeline that turns precomputed lists into items.

:class:`Pipeline` walks candidate sources (lists read by :mod:`recommender.serving`) in
order, fetches the items from the item cache or in one query, applies availability,
category and exclusion rules, and gives each item its reason. No model is loaded here.
"""

import hashlib
from dataclasses import dataclass

from django.db.models import Q
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.translation import gettext as _

from recommender.conf import rec_settings
from recommender.engine.complements import line_key
from recommender.engine.neighbors import capped_reason_order
from recommender.serving import published

__all__ = ["ITEMS_TOKEN_KEY", "Pipeline", "Recommendation", "Recommendations", "category_subject", "title_key"]

#: Cache key of the items token: any item's save or delete changes it (``serving.touch_items``).
ITEMS_TOKEN_KEY = "recommender:serving:items"


def category_subject(category):
    """The ``subject`` of a category's trending and popular lists (0 is the whole catalogue's).

    A positive integer key is the subject itself; any other value (a name, a path, 0 or
    a negative key) is a negative 63-bit digest of its text, so no category shares the
    site-wide subject 0.
    """
    value = _category_value(category)
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return int(value)
    digest = hashlib.blake2b(str(value).encode(), digest_size=8).digest()
    return -(int.from_bytes(digest, "big") >> 1) - 1

@dataclass(frozen=True, slots=True)
class Recommendation:
    """One recommended item, its score in its list, why it is shown, which algorithm chose it
    and the id of the training run that published its list (``run``, None for a list
    published without a run)."""

    item: object
    score: float
    reason: str
    algorithm: str
    because: object = None
    kind: str = ""  # "for_user", "history", "similar", "bought_together", "trending", "popular"
    run: int | None = None

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

    @property
    def add_to_cart_url(self):
        """The site's add-to-cart URL of the item (``ADD_TO_CART_URL`` reversed with its key), or ""."""
        name = rec_settings.ADD_TO_CART_URL
        return reverse(name, args=[self.item.pk]) if name else ""

    @property
    def category(self):
        """The item's category (the ``category`` item field), or None."""
        field = rec_settings.item_field("category")
        return getattr(self.item, field, None) if field else None


def _item_title(item):
    field = rec_settings.item_field("title")
    return str(getattr(item, field, "") if field else item)


def title_key(item):
    """The item's title, case and spacing folded (None without a title field): two products
    with the same key read as the same product on a card."""
    field = rec_settings.item_field("title")
    if not field:
        return None
    return _fold(getattr(item, field, ""))


def _fold(title):
    """``title`` with case and spacing folded; None when empty."""
    return " ".join(str(title or "").casefold().split()) or None


#: Kinds of candidates whose reason names one of the visitor's own history items.
PERSONAL_REASONS = ("for_user", "history")
#: Kinds of candidates of which a list shows at most ``SAME_LINE_CAP`` designs of one product
#: line while other items remain ("similar items" are often other designs on purpose;
#: "customers also bought" keeps one design of each line when it is trained).
LINE_CAPPED = ("for_user", "history", "trending", "popular")


def vary_reasons(candidates, n):
    """``candidates`` reordered so that one history item is the reason of at most half of
    ``n`` (rounded up) of them, while candidates with other reasons remain
    (``engine.neighbors.capped_reason_order``; other kinds of candidates are not capped).

    A personal list re-scored right after a view can owe its top items to that one view;
    the block then shows those items beside the ones the rest of the history brought.
    ``Pipeline.run`` orders each source with it, so that the items it fetches are likely
    the ones it shows, and holds the same share again after its filters.
    """
    if not candidates or n < 1:
        return candidates
    reasons = [c[2] if c[3] in PERSONAL_REASONS else None for c in candidates]
    return [candidates[i] for i in capped_reason_order(reasons, n)]


# Candidates, filters and reasons -----------------------------------------------------


class Recommendations(list):
    """A list of :class:`Recommendation`, with how it was made.

    ``sources_read``: how many candidate sources were read; ``skipped``: the keys of
    candidates passed over because they were excluded (before the list was full);
    ``skipped_titles``: the excluded titles (``exclude_titles``) that passed over a
    candidate. :mod:`recommender.fastpath.blocks` uses them to tell whether a block can be
    reused.
    """

    sources_read = 0

    def __init__(self, *args):
        super().__init__(*args)
        self.skipped = set()
        self.skipped_titles = set()


class Pipeline:
    """Walks candidate sources in order and keeps the first ``n`` items that pass the rules.

    The rules: not excluded, available, in the category asked for, not a second item
    with the same title, nor one with the title of a ``known`` subject item, of the item
    its reason names, or one of ``exclude_titles`` (``title_key``: the titles earlier
    blocks of the page showed);
    no history item is the reason of more than half of the items (rounded up) while
    personal candidates with other reasons remain, and no product line
    (``engine.complements.line_key``) has more than ``SAME_LINE_CAP`` items of the kinds
    in ``LINE_CAPPED`` while other items remain; both counted on the items that pass the
    filters. Items over the reason share wait, then follow their source's other items;
    items over the line cap wait until every source has been read.

    A source is a callable ``source(pipeline) -> [(pk, score, because_pk, why, algorithm, only_category, run)]``;
    sources after the first are read only when the ones before fall short. Candidates
    are fetched in one query per pass (usually one in all).
    """

    def __init__(self, n, exclude=(), category=None, bought=(), known=(), exclude_titles=()):
        self.n = max(0, int(n))
        self.model = rec_settings.item_model()
        self.to_pk = self.model._meta.pk.to_python
        self.excluded = {self.to_pk(getattr(x, "pk", x)) for x in exclude}
        self.bought = set(bought)
        self.known = {obj.pk: obj for obj in known}
        # the subject items' own titles: their twins (another colour or size) are not shown either
        self.titles = {title for obj in known if (title := title_key(obj)) is not None}
        self.excluded_titles = {key for t in exclude_titles if (key := _fold(t)) is not None}
        self.category = _category_value(category)
        if self.category is not None and self.category_field is not None and self.category_field.is_relation:
            self.category = self.category_field.target_field.to_python(self.category)  # "3" -> 3

    @cached_property
    def category_field(self):
        name = rec_settings.item_field("category")
        return self.model._meta.get_field(name) if name else None

    def run(self, sources):
        results, chosen, titles = Recommendations(), set(), self.titles | self.excluded_titles
        # Personal cards whose reason already names half the block wait in ``held`` and
        # follow the other cards of their source; cards of a product line that already has
        # SAME_LINE_CAP cards wait in ``line_held`` until every source has been read (a
        # category page where the visitor's list has three jumbo bags shows two, then the
        # next source's bags). ``vary_reasons`` orders each source by the first rule before
        # the filters; this holds both after them (a category page keeps a few items of a
        # 50-item list, and the order of the rest does not carry).
        cap, named, held, line_held = -(-self.n // 2), {}, [], []
        line_cap, lines = rec_settings.SAME_LINE_CAP, {}

        def add(obj, score, because, why, algorithm, run, line=None):
            """Appends the card unless a title rule keeps it out; True if it was appended."""
            if obj.pk in chosen:
                return False
            title = title_key(obj)
            if title is not None and title in titles:  # the same product in another colour or size
                if title in self.excluded_titles:
                    results.skipped_titles.add(title)
                return False
            if because is not None and title is not None and title_key(because) == title:
                return False  # "Because you viewed X": not X again
            titles.add(title)
            results.append(Recommendation(obj, score, self._reason(why, obj, because), algorithm,
                                          because, why, run))
            chosen.add(obj.pk)
            if line is not None:
                lines[line] = lines.get(line, 0) + 1
            return True

        def release():
            """The cards held for the reason share, in order; a card whose line filled up
            meanwhile waits for the end instead."""
            while held and len(results) < self.n:
                card, line = held.pop(0)[1]
                if line is not None and lines.get(line, 0) >= line_cap:
                    line_held.append(card)
                else:
                    add(*card, line=line)

        pending = list(sources)
        queue = []  # (source number, candidate) read from sources, not yet fetched
        while len(results) < self.n and (queue or pending or held):
            if held and not queue:  # the held cards come before the next source's
                release()
                continue
            # Fetch a window a little larger than what is missing (filters rarely drop
            # more than a few); fetch again if they did. Read the next source only when
            # the queue runs short.
            missing = self.n - len(results)
            window = missing + max(4, missing // 2)
            while pending and len(queue) + len(held) < missing:
                source = results.sources_read
                queue.extend((source, c) for c in vary_reasons(pending.pop(0)(self), self.n))
                results.sources_read += 1
            pool, pooled = [], set()
            while queue and len(pool) < window:
                source, candidate = queue.pop(0)
                pk = self.to_pk(candidate[0])
                if pk in self.excluded:
                    results.skipped.add(pk)
                    continue
                if pk in chosen or pk in pooled:
                    continue
                pooled.add(pk)
                pool.append((source, pk, *candidate[1:]))
            if not pool:
                continue
            objects = self._fetch([c[1:] for c in pool])
            for source, pk, score, because_pk, why, algorithm, only_category, run in pool:
                obj = objects.get(pk)
                if pk in self.excluded:
                    results.skipped.add(pk)
                    continue
                if obj is None or not self._eligible(obj, only_category):
                    continue
                if held and source > held[0][0]:
                    release()
                    if len(results) >= self.n:
                        break
                because = None
                if because_pk is not None:
                    because_pk = self.to_pk(because_pk)
                    because = self.known.get(because_pk) or objects.get(because_pk)
                card = (obj, score, because, why, algorithm, run)
                personal = why in PERSONAL_REASONS and because_pk is not None
                line = self._line(obj) if line_cap and why in LINE_CAPPED else None
                if line is not None and lines.get(line, 0) >= line_cap:
                    line_held.append(card)
                    continue
                if personal and named.get(because_pk, 0) >= cap:
                    held.append((source, (card, line)))
                    continue
                if add(*card, line=line) and personal:
                    named[because_pk] = named.get(because_pk, 0) + 1
                if len(results) >= self.n:
                    break
        for card in line_held:  # every source read: more designs of a line beat a short block
            if len(results) >= self.n:
                break
            add(*card)
        return results

    def _line(self, item):
        """The item's product line (``engine.complements.line_key``), or None."""
        field = rec_settings.item_field("title")
        if not field:
            return None
        category = getattr(item, self.category_field.attname, None) if self.category_field is not None else None
        return line_key(getattr(item, field, ""), category)

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
    found = published.get_many([ITEMS_TOKEN_KEY, *keys.values()])
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
        # deleted items are remembered as None, so they cost no query either (skipped if the
        # cache is unreachable: get_many then found nothing, and the query above answered)
        published.cache_set_many({keys[pk]: (token, fresh.get(pk)) for pk in missing},
                                 rec_settings.ITEM_CACHE_TIMEOUT)
    return objects


def _category_value(category):
    """A category instance, key or raw value as the value stored on items (or None)."""
    if category is None or category == "":
        return None
    return getattr(category, "pk", category)
