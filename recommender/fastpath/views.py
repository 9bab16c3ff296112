"""The recommendation endpoints' fast path: stored JSON served before DRF is involved.

A DRF view costs about 2.6x a bare Django view per request (docs/serving.md). Each
endpoint URL points at a function here that, with ``RECOMMENDER["FAST_PATH"]`` on,
answers a repeated GET with one Redis round trip, and otherwise calls the plain DRF
view of :mod:`recommender.api.recommendations` with a :class:`FastPath` context:

1. Is the request eligible (a plain JSON GET, no ``?user=``, no Authorization header)?
   If not, DRF answers it.
2. Who asks? A logged-in user's key comes from the session's claim checked against a
   cached auth record (:mod:`recommender.fastpath.identity`), without a user query;
   similar-items, bought-together and trending are answered the same for every
   anonymous visitor.
3. One round trip reads the stored response, the cache values that tell whether it is
   still right (:mod:`recommender.fastpath.responses`) and counts the throttle window
   (:mod:`recommender.fastpath.throttle_counts`).
4. A valid stored response that the throttle allows is returned as it is. Anything
   else goes to DRF with the context: the lookup (where DRF stores the response it
   makes) and the throttle verdict (so DRF's throttle does not count the request twice).

While Redis is unreachable (:func:`recommender.serving.published.cache_down`) every
request goes straight to DRF, which serves from the database.
"""

from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.http import HttpResponse
from django.utils.functional import SimpleLazyObject, empty

from recommender import fastpath, serving
from recommender.api.recommendations import (
    BoughtTogetherView,
    RecommendationsView,
    SimilarItemsView,
    TrendingView,
)
from recommender.api.throttling import Counted, RecommendationsAnonThrottle, RecommendationsUserThrottle
from recommender.conf import rec_settings
from recommender.fastpath import identity, responses
from recommender.fastpath.throttle_counts import local_counts
from recommender.serving import published


class FastPath:
    """What the fast path learned about a request that it hands on to DRF.

    - ``lookup``: the logged-in user's stored-response lookup (a miss): DRF stores the
      response it makes under it.
    - ``shared``: the same for the anonymous visitors' shared response.
    - ``counted``: the request already counted in the throttle's window, and the verdict
      (:class:`~recommender.api.throttling.Counted`), read by the DRF throttle.
    - ``algorithm``: the list algorithm ``lookup`` was made for (an experiment's variant, or
      the default); DRF stores its response under ``lookup`` only if it served the same.
    """

    __slots__ = ("lookup", "shared", "counted", "algorithm")

    def __init__(self):
        self.lookup = self.shared = self.counted = self.algorithm = None


def _drf(drf_view, request, context, args, kwargs):
    return drf_view(request, *args, fastpath=context, **kwargs)


def _unresolved_user(request):
    """True while ``request.user`` is still the lazy object Django's middleware put there."""
    user = request.__dict__.get("user")
    return isinstance(user, SimpleLazyObject) and user._wrapped is empty


def _eligible(request):
    # an Authorization header is for DRF's other authenticators (token, basic): not ours
    return (request.method == "GET" and "user" not in request.GET and "format" not in request.GET
            and "text/html" not in request.META.get("HTTP_ACCEPT", "")
            and "HTTP_AUTHORIZATION" not in request.META)


def _counted_lookup(request, context, throttle, ident, counted_as, subject, watched, extra=()):
    """The stored response of ``subject`` and ``extra`` values, with the request counted in
    ``throttle``'s window of ``ident``: one round trip. Returns ``(lookup, allowed)`` and
    records the verdict in ``context.counted``."""
    counter = throttle.counter_key_for(ident)
    interval = rec_settings.THROTTLE_SYNC_INTERVAL
    if counter is not None and interval:  # counted here, added to Redis in batches
        found = responses.lookup_watched(request, subject, watched, extra=extra)
        count = local_counts.count(counter, throttle.duration + 1, interval)
    else:
        found = responses.lookup_watched(request, subject, watched, counter=counter,
                                         counter_ttl=throttle.duration + 1 if counter else None, extra=extra)
        count = found.count
    if counter is None or count is None:  # not counted (Redis unreachable): DRF's throttle decides
        return found, True
    allowed = throttle.judge(count)
    context.counted = Counted(throttle.scope, counted_as, allowed, throttle.wait_time)
    return found, allowed


class _Control(Exception):
    """The visitor is in a "no block" control: DRF answers its empty page."""


def _assignment(block, request, own_key):
    """``(assignment, key)``: the visitor's variant for ``block`` when a running experiment
    governs it and the request names no algorithm, else ``(None, "")``; ``own_key`` is the
    visitor's assignment key unless the session carries one across login.

    Raises :class:`_Control` for a "no block" control. No query once warm (the process's
    copy of the running experiments, ``analytics.experiments``).
    """
    if "algorithm" in request.GET:
        return None, ""
    from recommender.analytics import experiments

    if not experiments.governs(block):
        return None, ""
    session = getattr(request, "session", None)
    key = (session.get(experiments.SESSION_KEY) if session is not None else None) or own_key
    assignment = experiments.algorithm_for(block, key=key)
    if assignment is not None and assignment.algorithm is None:
        raise _Control
    return assignment, key


def _record(assignment, key, user_id=None, session_key=""):
    """Record the exposure of a visitor served a stored response (skipped when known)."""
    if assignment is not None:
        from recommender.analytics import experiments

        experiments.record_exposure(assignment, key, user_id=user_id, session_key=session_key)


def _stored_response(body):
    response = HttpResponse(body, content_type="application/json")
    response.headers["Vary"] = "Accept"  # as patch_vary_headers on a new response, for less
    return response


def _as_drf_view(function, drf_view):
    """Give a fast-path view function what the schema generator and CSRF machinery look for."""
    function.cls = drf_view.cls
    function.initkwargs = drf_view.initkwargs
    function.csrf_exempt = True
    return function


_drf_recommendations = RecommendationsView.as_view()


def recommendations_view(request, *args, **kwargs):
    """``GET /recommender/api/recommendations/``: the stored JSON when still valid, else DRF.

    A logged-in user's own GET costs one Redis round trip: the stored response, the
    tokens that tell whether it is still right, the throttle's count and, while
    ``request.user`` is unresolved, the user's cached auth record, which saves the user
    query.
    """
    if not fastpath.enabled() or published.cache_down():  # Redis unreachable: the plain path
        return _drf_recommendations(request, *args, **kwargs)
    context = FastPath()
    if not _eligible(request):
        return _drf(_drf_recommendations, request, context, args, kwargs)
    throttle = RecommendationsUserThrottle()
    redis = published.backend()[1] is not None
    claim = None
    try:
        if _unresolved_user(request) and identity.enabled() and (throttle.rate is None or redis):
            claim = identity.claim(request)
            pk = claim.pk if claim is not None else None
        else:
            user = getattr(request, "user", None)
            pk = user.pk if user is not None and user.is_authenticated else None
    except DatabaseError:  # the session could not be read: DRF answers (a JSON 503)
        return _drf(_drf_recommendations, request, context, args, kwargs)
    if pk is None:  # anonymous: DRF's session fallbacks
        return _drf(_drf_recommendations, request, context, args, kwargs)
    if throttle.rate is not None and not redis:  # no Redis: DRF's own throttle, once
        if not throttle.allow_request(request, None):
            return _drf(_drf_recommendations, request, context, args, kwargs)  # DRF answers the 429
        context.counted = Counted(throttle.scope, pk, True, None)
    try:
        assignment, key = _assignment("recommended_for_you", request, f"u:{pk}")
    except (_Control, DatabaseError):  # an empty page, or the experiments could not be read: DRF
        return _drf(_drf_recommendations, request, context, args, kwargs)
    variant = assignment.algorithm if assignment is not None else None
    algorithm = rec_settings.list_algorithm("for_user", variant or request.GET.get("algorithm"))
    found, allowed = _counted_lookup(request, context, throttle, pk, pk, pk,
                                     responses.user_watched(pk, algorithm),
                                     extra=[identity.auth_key(pk)] if claim is not None else ())
    verified = claim is None or identity.verify(claim, found.extra[0])
    if verified and allowed and found.body is not None:
        try:
            _record(assignment, key, user_id=pk)
        except DatabaseError:
            return _drf(_drf_recommendations, request, context, args, kwargs)
        return _stored_response(found.body)
    context.lookup, context.algorithm = found, algorithm
    response = _drf(_drf_recommendations, request, context, args, kwargs)
    if claim is not None and not verified:
        user = request.user  # resolved by DRF's session authentication
        if user.is_authenticated and user.pk == claim.pk:
            identity.remember(request, user)
    return response


_as_drf_view(recommendations_view, _drf_recommendations)


# Anonymous visitors: stored responses shared by all of them --------------------------------
#
# An anonymous visitor's similar-items, bought-together and trending responses depend only
# on the item's list (or the trending list), the items and the request's parameters: they
# are stored once and served to every anonymous visitor while the list and the items token
# are unchanged, with the anonymous throttle counted in the same Redis round trip. Logged-in
# visitors (their bought items are left out) and everything unusual go through DRF.


def _anonymous(request):
    """Whether the visitor is anonymous, without resolving ``request.user`` if it is still lazy."""
    if _unresolved_user(request):
        return identity.claim(request) is None  # Django would find no user in this session either
    user = getattr(request, "user", None)
    return user is None or not user.is_authenticated


def _shared_list_view(drf_view, watched_lists, block):
    """Wrap a DRF list view with the anonymous fast path; ``watched_lists(request, kwargs,
    variant)`` names the lists its response is made from (None: no fast path for this
    request). While an experiment governs ``block``, the visitors of one variant share one
    stored response (``responses.shared_subject``)."""

    def view(request, *args, **kwargs):
        if not fastpath.enabled() or published.cache_down():  # Redis unreachable: the plain path
            return drf_view(request, *args, **kwargs)
        context = FastPath()
        assignment, key, session_key = None, "", None
        try:
            plain = not _eligible(request) or not _anonymous(request)
            if not plain:
                session_key = getattr(getattr(request, "session", None), "session_key", None)
                assignment, key = _assignment(block, request, f"s:{session_key}" if session_key else "")
        except (_Control, DatabaseError):  # an empty page, or the session could not be read: DRF
            plain = True
        if plain:
            return _drf(drf_view, request, context, args, kwargs)
        variant = assignment.algorithm if assignment is not None else None
        lists = watched_lists(request, kwargs, variant)
        throttle = RecommendationsAnonThrottle()
        if lists is None or (throttle.rate is not None and published.backend()[1] is None):
            return _drf(drf_view, request, context, args, kwargs)
        watched = [published.cache_key(*key) for key in lists] + [serving.ITEMS_TOKEN_KEY]
        found, allowed = _counted_lookup(request, context, throttle, throttle.get_ident(request), None,
                                         responses.shared_subject(variant), watched)
        if allowed and found.body is not None:
            try:
                _record(assignment, key, session_key=session_key or "")
            except DatabaseError:
                return _drf(drf_view, request, context, args, kwargs)
            return _stored_response(found.body)
        context.shared = found
        return _drf(drf_view, request, context, args, kwargs)

    return _as_drf_view(view, drf_view)


def _item_key(kwargs):
    model = rec_settings.item_model()
    try:
        return model._meta.pk.to_python(kwargs.get("pk"))
    except ValidationError:
        return None


def _one_list(kind):
    def lists(request, kwargs, variant):
        pk = _item_key(kwargs)
        if pk is None:
            return None  # DRF answers the 404
        return [(kind, rec_settings.list_algorithm(kind, variant or request.GET.get("algorithm")), pk)]
    return lists


similar_items_view = _shared_list_view(SimilarItemsView.as_view(), _one_list("similar"), "similar_items")
bought_together_view = _shared_list_view(BoughtTogetherView.as_view(), _one_list("bought_together"),
                                         "bought_together")


def _trending_lists(request, kwargs, variant):
    """The site's trending list and, with ``?category=``, the category's own list (read first)."""
    algorithm = rec_settings.list_algorithm("trending", variant or request.GET.get("algorithm"))
    lists = [("trending", algorithm, 0)]
    if request.GET.get("category"):
        lists.append(("trending", algorithm, serving.category_subject(request.GET["category"])))
    return lists


trending_view = _shared_list_view(TrendingView.as_view(), _trending_lists, "trending")
