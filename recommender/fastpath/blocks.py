"""Rendered recommendation blocks, reused while the lists and items they show are unchanged.

A block (``{% similar_items product %}`` and the others) costs an item query and a
template render, about 2.5 ms; three of them on a product page are most of its server
time. A block's HTML depends only on:

- the precomputed list(s) it read (the raw bytes in the cache),
- the items shown (the items token, :func:`recommender.serving.touch_items`),
- the visitor's bought and excluded items (their user token, for logged-in visitors),
- its options: block, algorithm, ``n``, category, exclusions (including the items that
  earlier blocks of the page showed, and their titles), title, template (name and
  source), currency, language and its position on the page.

The options name the cache entry; the lists and tokens are read in the same round trip
and their digest is stored in front of the HTML, so one MGET tells whether the stored
HTML is still right (the pattern of :mod:`recommender.fastpath.responses`). Only blocks
made entirely from their first source are stored: a block that fell back to history,
trending or popular lists depends on more than its digest covers.

The visitor's exclusions (items bought, items and titles already shown by earlier blocks
of the page, a template's ``exclude``) are not part of the entry's name. A block made
without passing over any excluded item or title is what every visitor gets whose
exclusions miss its items and their titles, so it is shared: similar items and
customers-also-bought are rendered once per product for all visitors, not once per
visitor. A block that did pass over an excluded item or title is stored under a second
name that includes the exclusions.

Only blocks rendered by the app's own ``recommender/block.html`` are shared between
visitors. A site's template (an override of ``block.html`` or the tag's ``template``) may
show the visitor, so its blocks are stored per user. A site template that shows request
data other than the user (the path, a query parameter, a CSRF token) must not be stored: pass
``cache=False`` to the tag, or set ``RECOMMENDER['BLOCK_CACHE_TIMEOUT'] = None``.
"""

import hashlib
import json
import os

from django.utils.translation import get_language

from recommender import serving
from recommender.conf import rec_settings
from recommender.serving import published

__all__ = ["Spec", "lookup", "store", "enabled"]


def enabled():
    return bool(rec_settings.BLOCK_CACHE_TIMEOUT) and bool(rec_settings.FAST_PATH)


class Spec:
    """What a block is made from: the lists it reads, whose it is, its options, its exclusions.

    Two entries can answer for it, both read in the same round trip: the *base* entry,
    made without any of the visitor's exclusions and usable when none of its items is
    excluded now; and the *exact* entry for this very set of exclusions.
    """

    __slots__ = ("key", "exact_key", "watched", "excluded", "excluded_titles", "fingerprint", "html",
                 "shown", "titles")

    def __init__(self, block, lists, user_pk, options, excluded=(), excluded_titles=()):
        raw = json.dumps([block, [list(key) for key in lists], user_pk, get_language(), options],
                         default=str, separators=(",", ":"))
        digest = hashlib.blake2b(raw.encode(), digest_size=16)
        # a visitor's own blocks carry their key, so that deleting the user finds them
        prefix = "recommender:block:" if user_pk is None else f"recommender:block:u{user_pk}:"
        self.key = f"{prefix}{digest.hexdigest()}"
        self.excluded = set(excluded)
        self.excluded_titles = set(excluded_titles)
        digest.update(json.dumps([sorted(map(str, self.excluded)), sorted(self.excluded_titles)]).encode())
        self.exact_key = f"{prefix}{digest.hexdigest()}"
        self.watched = [published.cache_key(kind, algorithm, subject) for kind, algorithm, subject in lists]
        self.watched.append(serving.ITEMS_TOKEN_KEY)
        if user_pk is not None:
            self.watched.append(serving.user_token_key(user_pk))
        self.fingerprint = self.html = self.shown = self.titles = None


_APP_TEMPLATE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "templates", "recommender", "block.html")


def is_app_template(template):
    """Whether ``template`` is the app's own ``recommender/block.html``, which shows nothing of the visitor."""
    origin = getattr(getattr(template, "template", template), "origin", None)
    name = getattr(origin, "name", None)
    return bool(name) and os.path.abspath(name) == _APP_TEMPLATE


def template_digest(template):
    """A digest of a template's source, so that a changed template is not served from cache."""
    source = getattr(getattr(template, "template", template), "source", "")
    return hashlib.blake2b(source.encode(), digest_size=8).hexdigest()


def _valid(spec, stored):
    if isinstance(stored, bytes) and stored[:len(spec.fingerprint)] == spec.fingerprint:
        payload = json.loads(stored[len(spec.fingerprint):])
        if "titles" in payload:  # an entry stored before titles were recorded is not used
            return payload["html"], payload["shown"], payload["titles"]
    return None


def lookup(spec, to_pk=lambda pk: pk):
    """Read the stored block and what it depends on; sets ``spec.html``, ``spec.shown`` and
    ``spec.titles`` on a hit.

    ``to_pk`` converts stored keys back to the item model's key type.
    """
    values = published.mget_raw([*spec.watched, spec.key, spec.exact_key])
    spec.fingerprint = published.fingerprint(values[:-2])
    base = _valid(spec, values[-2])
    if base is not None:
        shown = [to_pk(pk) for pk in base[1]]
        if spec.excluded.isdisjoint(shown) and spec.excluded_titles.isdisjoint(base[2]):
            spec.html, spec.shown, spec.titles = base[0], shown, base[2]
            return True
    exact = _valid(spec, values[-1])
    if exact is not None:
        spec.html, spec.shown, spec.titles = exact[0], [to_pk(pk) for pk in exact[1]], exact[2]
        return True
    return False


def store(spec, html, shown, titles, exact):
    """Keep ``html`` for ``spec`` (after a :func:`lookup` miss), with the items it shows
    and their title keys.

    ``exact``: the block depends on the visitor's exclusions (it passed over an item or a
    title they exclude), so it is stored for that set of exclusions only.
    """
    if spec.fingerprint is None:
        return
    payload = json.dumps({"html": str(html), "shown": list(shown), "titles": list(titles)}, default=str,
                         ensure_ascii=False, separators=(",", ":"))
    published.set_raw(spec.exact_key if exact else spec.key, spec.fingerprint + payload.encode(),
                      rec_settings.BLOCK_CACHE_TIMEOUT)
