"""API views that serve recommendations: for the visitor, for an item, trending.

``recommendations_view`` answers a logged-in user's own GET from pre-rendered JSON
(:mod:`recommender.api.response_cache`) before DRF is involved, because a DRF view
costs about 2.6x a bare Django view per request (MEASUREMENTS.md). Everything else
(anonymous visitors, ``?user=``, cache misses, the browsable API) goes through
:class:`RecommendationsView`, which validates the parameters, checks permissions and
throttles, and stores the response that the fast path serves next time; a response
is only ever stored after its parameters passed validation.
"""

import json

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpResponse
from django.utils.functional import SimpleLazyObject, empty
from django.utils.translation import gettext as _
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from recommender import identity, served, serving
from recommender.api import response_cache
from recommender.api.serializers import (
    RecommendationPageSerializer,
    RecommendationQuerySerializer,
    UserRecommendationQuerySerializer,
    recommendation_data,
)
from recommender.api.throttling import (
    Counted,
    RecommendationsAnonThrottle,
    RecommendationsUserThrottle,
    local_counts,
)
from recommender.conf import rec_settings

try:
    from drf_spectacular.utils import extend_schema
except ImportError:  # the OpenAPI schema is optional
    def extend_schema(*args, **kwargs):
        return lambda view: view

#: Every list is built this long; ``limit``/``offset`` page through it.
MAX_RESULTS = 50


def paginate(request, results, limit, offset):
    """A limit/offset page of ``results`` in DRF's ``LimitOffsetPagination`` shape."""
    url = request.build_absolute_uri()
    count = len(results)
    next_url = previous_url = None
    if offset + limit < count:
        next_url = replace_query_param(replace_query_param(url, "limit", limit), "offset", offset + limit)
    if offset > 0:
        previous_url = replace_query_param(url, "limit", limit)
        previous_url = (remove_query_param(previous_url, "offset") if offset - limit <= 0
                        else replace_query_param(previous_url, "offset", offset - limit))
    return {"count": count, "next": next_url, "previous": previous_url,
            "results": [recommendation_data(rec) for rec in results[offset:offset + limit]]}


class _RecommendationView(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [RecommendationsAnonThrottle, RecommendationsUserThrottle]
    query_serializer = RecommendationQuerySerializer

    def query(self, request):
        serializer = self.query_serializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def page(self, request, recommendations, params):
        return Response(paginate(request, recommendations, params["limit"], params["offset"]))


class RecommendationsView(_RecommendationView):
    """Recommendations for the visitor (logged-in or anonymous); staff may ask for `?user=<pk>`.

    Anonymous and new visitors get items similar to what they viewed in this
    session, then trending and popular items.
    """

    query_serializer = UserRecommendationQuerySerializer

    @extend_schema(parameters=[UserRecommendationQuerySerializer], responses=RecommendationPageSerializer)
    def get(self, request):
        params = self.query(request)
        user = request.user if request.user.is_authenticated else None
        target = user
        if "user" in params and (user is None or params["user"] != user.pk):
            if user is None or not user.is_staff:
                raise PermissionDenied(_("Only staff can read another user's recommendations."))
            target = get_user_model()._default_manager.filter(pk=params["user"]).first()
            if target is None:
                raise ValidationError({"user": [_("No user with key “%(key)s”.") % {"key": params["user"]}]})
        algorithm = params.get("algorithm") or rec_settings.DEFAULT_ALGORITHM
        found = None
        if target is not None:
            found = getattr(request, "_recommender_lookup", None)
            if found is None or found.key != response_cache.response_key(request, target.pk):
                found = response_cache.lookup(request, target.pk, algorithm)
            if found.body is not None:
                return self.cached(request, found.body)
        who = request if target is user else target
        recs = serving.recommend_for(who, n=MAX_RESULTS, algorithm=algorithm, category=params.get("category"),
                                     exclude=params.get("exclude", ()))
        data = paginate(request, recs, params["limit"], params["offset"])
        if found is not None and recs and recs[0].kind == "for_user":
            shown = recs[params["offset"]:params["offset"] + params["limit"]]
            fresh = all(rec.kind == "for_user" for rec in shown)
            timeout = rec_settings.CACHE_TIMEOUT if fresh else response_cache.SHORT_TIMEOUT
            response_cache.store(found, response_cache.encode(data), timeout)
        return Response(data)

    def cached(self, request, body):
        if request.accepted_renderer.format == "json":
            return HttpResponse(body, content_type="application/json")
        return Response(json.loads(body))


_drf_recommendations = RecommendationsView.as_view()


def _unresolved_user(request):
    """True while ``request.user`` is still the lazy object Django's middleware put there."""
    user = request.__dict__.get("user")
    return isinstance(user, SimpleLazyObject) and user._wrapped is empty


def _fast_eligible(request):
    # an Authorization header is for DRF's other authenticators (token, basic): not ours
    return (request.method == "GET" and "user" not in request.GET and "format" not in request.GET
            and "text/html" not in request.META.get("HTTP_ACCEPT", "")
            and "HTTP_AUTHORIZATION" not in request.META)


def _counted_lookup(request, throttle, ident, counted_as, subject, watched, extra=()):
    """The stored response of ``subject`` and ``extra`` values, with the request counted in
    ``throttle``'s window of ``ident``: one round trip. Returns ``(lookup, allowed)``; DRF's
    throttle later reuses the verdict (``Counted``) instead of counting again."""
    counter = throttle.counter_key_for(ident)
    interval = rec_settings.THROTTLE_SYNC_INTERVAL
    if counter is not None and interval:  # counted here, added to Redis in batches
        found = response_cache.lookup_watched(request, subject, watched, extra=extra)
        count = local_counts.count(counter, throttle.duration + 1, interval)
    else:
        found = response_cache.lookup_watched(request, subject, watched, counter=counter,
                                              counter_ttl=throttle.duration + 1 if counter else None, extra=extra)
        count = found.count
    if counter is None:
        return found, True
    allowed = throttle.judge(count)
    request._recommender_counted = Counted(throttle.scope, counted_as, allowed, throttle.wait_time)
    return found, allowed


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


def recommendations_view(request, *args, **kwargs):
    """``GET /recommender/api/recommendations/``: pre-rendered JSON when still valid, else DRF.

    A logged-in user's own GET costs one Redis round trip: the stored response, the
    tokens that tell whether it is still right, the throttle's count and, while
    ``request.user`` is unresolved, the user's cached auth record
    (:mod:`recommender.identity`), which saves the user query.
    """
    if not _fast_eligible(request):
        return _drf_recommendations(request, *args, **kwargs)
    throttle = RecommendationsUserThrottle()
    claim = None
    if _unresolved_user(request) and identity.enabled() and (
            throttle.rate is None or served.backend()[1] is not None):
        claim = identity.claim(request)
        pk = claim.pk if claim is not None else None
    else:
        user = getattr(request, "user", None)
        pk = user.pk if user is not None and user.is_authenticated else None
    if pk is None:
        return _drf_recommendations(request, *args, **kwargs)
    if throttle.rate is not None and served.backend()[1] is None:  # no Redis: DRF's own throttle, once
        if not throttle.allow_request(request, None):
            return _drf_recommendations(request, *args, **kwargs)  # DRF answers the 429
        request._recommender_counted = Counted(throttle.scope, pk, True, None)
    algorithm = request.GET.get("algorithm") or rec_settings.DEFAULT_ALGORITHM
    found, allowed = _counted_lookup(request, throttle, pk, pk, pk, response_cache.user_watched(pk, algorithm),
                                     extra=[identity.auth_key(pk)] if claim is not None else ())
    verified = claim is None or identity.verify(claim, found.extra[0])
    if verified and allowed and found.body is not None:
        return _stored_response(found.body)
    request._recommender_lookup = found
    response = _drf_recommendations(request, *args, **kwargs)
    if claim is not None and not verified:
        user = request.user  # resolved by DRF's session authentication
        if user.is_authenticated and user.pk == claim.pk:
            identity.remember(request, user)
    return response


_as_drf_view(recommendations_view, _drf_recommendations)


def _item(pk):
    model = rec_settings.item_model()
    try:
        return model._default_manager.get(pk=model._meta.pk.to_python(pk))
    except (model.DoesNotExist, DjangoValidationError):
        raise Http404(_("No such item.")) from None


class _ItemListView(_RecommendationView):
    """A list about one item; ``recommend`` is the serving function that makes it."""

    recommend = None

    @extend_schema(parameters=[RecommendationQuerySerializer], responses=RecommendationPageSerializer)
    def get(self, request, pk):
        params = self.query(request)
        recs = type(self).recommend(_item(pk), n=MAX_RESULTS, algorithm=params.get("algorithm"),
                                    request=request, category=params.get("category"),
                                    exclude=params.get("exclude", ()))
        return self.page(request, recs, params)

    def page(self, request, recommendations, params):
        data = paginate(request, recommendations, params["limit"], params["offset"])
        _store_shared(request, recommendations, data, self.kind, params)
        return Response(data)


class SimilarItemsView(_ItemListView):
    """Items similar to an item ("Similar to X"), then popular items of its category."""

    recommend = staticmethod(serving.similar_items)
    kind = "similar"


class BoughtTogetherView(_ItemListView):
    """Items customers bought together with an item."""

    recommend = staticmethod(serving.bought_together)
    kind = "bought_together"


class TrendingView(_RecommendationView):
    """Trending items ("Trending now"), then popular ones, optionally of one category."""

    @extend_schema(parameters=[RecommendationQuerySerializer], responses=RecommendationPageSerializer)
    def get(self, request):
        params = self.query(request)
        recs = serving.trending(n=MAX_RESULTS, category=params.get("category"), request=request,
                                algorithm=params.get("algorithm"), exclude=params.get("exclude", ()))
        data = paginate(request, recs, params["limit"], params["offset"])
        _store_shared(request, recs, data, "trending", params)
        return Response(data)


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


def _store_shared(request, recommendations, data, kind, params):
    """Store a response made for an anonymous visitor (after a miss of the shared lookup).

    A page made only of the watched list's items (``kind``) is kept while that list and
    the items are unchanged; a page that shows fallback items (popular), whose list is not
    in the fingerprint, only for a minute.
    """
    found = getattr(request, "_recommender_shared", None)
    user = getattr(request, "user", None)
    if found is None or (user is not None and user.is_authenticated):
        return
    if found.key != response_cache.response_key(request, "anon"):
        return
    shown = recommendations[params["offset"]:params["offset"] + params["limit"]]
    fresh = all(rec.kind == kind for rec in shown)
    response_cache.store(found, response_cache.encode(data),
                         rec_settings.CACHE_TIMEOUT if fresh else response_cache.SHORT_TIMEOUT)


def _shared_list_view(drf_view, watched_lists):
    """Wrap a DRF list view with the anonymous fast path; ``watched_lists(request, kwargs)``
    names the lists its response is made from (None: no fast path for this request)."""

    def view(request, *args, **kwargs):
        if not _fast_eligible(request) or not _anonymous(request):
            return drf_view(request, *args, **kwargs)
        lists = watched_lists(request, kwargs)
        throttle = RecommendationsAnonThrottle()
        if lists is None or (throttle.rate is not None and served.backend()[1] is None):
            return drf_view(request, *args, **kwargs)
        watched = [served.cache_key(*key) for key in lists] + [serving.ITEMS_TOKEN_KEY]
        found, allowed = _counted_lookup(request, throttle, throttle.get_ident(request), None, "anon", watched)
        if allowed and found.body is not None:
            return _stored_response(found.body)
        request._recommender_shared = found
        return drf_view(request, *args, **kwargs)

    return _as_drf_view(view, drf_view)


def _item_key(kwargs):
    model = rec_settings.item_model()
    try:
        return model._meta.pk.to_python(kwargs.get("pk"))
    except DjangoValidationError:
        return None


def _one_list(kind, setting):
    def lists(request, kwargs):
        pk = _item_key(kwargs)
        if pk is None:
            return None  # DRF answers the 404
        return [(kind, request.GET.get("algorithm") or getattr(rec_settings, setting), pk)]
    return lists


similar_items_view = _shared_list_view(SimilarItemsView.as_view(), _one_list("similar", "SIMILAR_ALGORITHM"))
bought_together_view = _shared_list_view(BoughtTogetherView.as_view(),
                                         _one_list("bought_together", "BOUGHT_TOGETHER_ALGORITHM"))
trending_view = _shared_list_view(TrendingView.as_view(), lambda request, kwargs: [
    ("trending", request.GET.get("algorithm") or rec_settings.TRENDING_ALGORITHM, 0)])
