"""API views that serve recommendations: for the visitor, for an item, trending.

These are plain DRF views: they validate the parameters, check permissions and
throttles, and page through the served lists. With the fast path on
(``RECOMMENDER["FAST_PATH"]``), :mod:`recommender.fastpath.views` answers repeated
GETs from stored JSON before DRF is involved and hands everything else to these views
with a :class:`~recommender.fastpath.views.FastPath` context (the ``fastpath`` view
argument): what it already looked up and counted. These views then store the
response they made, for the fast path to serve next time; a response is only ever
stored after its parameters passed validation.
"""

import json

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from recommender import serving
from recommender.api.descriptions import DescribedView
from recommender.api.schema import ITEM_ID, errors, extend_schema
from recommender.api.serializers import (
    RecommendationPageSerializer,
    RecommendationQuerySerializer,
    UserRecommendationQuerySerializer,
    recommendation_data,
)
from recommender.api.throttling import RecommendationsAnonThrottle, RecommendationsUserThrottle
from recommender.api.views import APIDefaultsMixin
from recommender.conf import rec_settings
from recommender.fastpath import responses


def max_results():
    """Every list is built this long (``SERVED_LIST_LENGTH``); ``limit``/``offset`` page through it."""
    return rec_settings.SERVED_LIST_LENGTH


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


def assigned(request, block, params):
    """``(variant, show)``: the algorithm a running experiment assigns this visitor for
    ``block`` (``analytics.experiments.assigned``, which records the exposure), or None (no
    experiment governs it, or the request names its ``?algorithm=``). ``show`` is False for
    a "no block" control: the endpoint then answers an empty page."""
    if params.get("algorithm") is not None:
        return None, True
    from recommender.analytics import experiments

    return experiments.assigned(request, block)


class _RecommendationView(APIDefaultsMixin, DescribedView, APIView):
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
    """Recommendations for the visitor (logged-in or anonymous); staff may ask for ``?user=<pk>``.

    Anonymous and new visitors get items similar to what they viewed in this
    session, then trending and popular items.
    """

    query_serializer = UserRecommendationQuerySerializer

    @extend_schema(parameters=[UserRecommendationQuerySerializer],
                   responses={200: RecommendationPageSerializer, **errors(
                       400, 403, 429, 503, e403=gettext_lazy("?user= of another user without the "
                                                             "recommender.view_interaction permission."))})
    def get(self, request, fastpath=None):
        params = self.query(request)
        user = request.user if request.user.is_authenticated else None
        target = user
        if "user" in params and (user is None or params["user"] != user.pk):
            if user is None or not user.has_perm("recommender.view_interaction"):
                raise PermissionDenied(_("Reading another user's recommendations needs the "
                                         "“recommender.view_interaction” permission."))
            target = get_user_model()._default_manager.filter(pk=params["user"]).first()
            if target is None:
                raise ValidationError({"user": [_("No user with key “%(key)s”.") % {"key": params["user"]}]})
        variant, show = assigned(request, "recommended_for_you", params) if target is user else (None, True)
        if not show:
            return self.page(request, [], params)
        algorithm = rec_settings.list_algorithm("for_user", variant or params.get("algorithm"))
        found = None
        if target is not None and fastpath is not None:
            # the fast path's lookup, unless it was made for another user, query or algorithm
            found = fastpath.lookup
            if (found is None or found.key != responses.response_key(request, target.pk)
                    or fastpath.algorithm != algorithm):
                found = responses.lookup(request, target.pk, algorithm)
            if found.body is not None:
                return self.cached(request, found.body)
        who = request if target is user else target
        recs = serving.recommend_for(who, n=max_results(), algorithm=algorithm, category=params.get("category"),
                                     exclude=params.get("exclude", ()))
        data = paginate(request, recs, params["limit"], params["offset"])
        if found is not None and recs and recs[0].kind == "for_user":
            shown = recs[params["offset"]:params["offset"] + params["limit"]]
            fresh = all(rec.kind == "for_user" for rec in shown)
            timeout = rec_settings.CACHE_TIMEOUT if fresh else responses.SHORT_TIMEOUT
            responses.store(found, responses.encode(data), timeout)
        return Response(data)

    def cached(self, request, body):
        if request.accepted_renderer.format == "json":
            return HttpResponse(body, content_type="application/json")
        return Response(json.loads(body))




def _item(pk):
    model = rec_settings.item_model()
    try:
        return model._default_manager.get(pk=model._meta.pk.to_python(pk))
    except (model.DoesNotExist, DjangoValidationError):
        raise Http404(_("No such item.")) from None


class _SharedListView(_RecommendationView):
    """A list that is the same for every anonymous visitor: with the fast path, the
    response made for one is stored for all of them (see ``store_shared``)."""

    kind = None

    def page(self, request, recommendations, params, fastpath=None, variant=None):
        data = paginate(request, recommendations, params["limit"], params["offset"])
        if fastpath is not None:
            store_shared(request, recommendations, data, self.kind, params, fastpath, variant)
        return Response(data)


class _ItemListView(_SharedListView):
    """A list about one item; ``recommend`` is the serving function that makes it."""

    recommend = None

    @extend_schema(parameters=[ITEM_ID, RecommendationQuerySerializer],
                   responses={200: RecommendationPageSerializer, **errors(400, 404, 429, 503)})
    def get(self, request, pk, fastpath=None):
        params = self.query(request)
        item = _item(pk)
        variant, show = assigned(request, self.block, params)
        if not show:
            return self.page(request, [], params)
        recs = type(self).recommend(item, n=max_results(), algorithm=variant or params.get("algorithm"),
                                    request=request, category=params.get("category"),
                                    exclude=params.get("exclude", ()))
        return self.page(request, recs, params, fastpath, variant)


class SimilarItemsView(_ItemListView):
    """Items similar to an item ("Similar to X"), then popular items of its category."""

    recommend = staticmethod(serving.similar_items)
    kind = "similar"
    block = "similar_items"


class BoughtTogetherView(_ItemListView):
    """Items customers bought together with an item."""

    recommend = staticmethod(serving.bought_together)
    kind = "bought_together"
    block = "bought_together"


class TrendingView(_SharedListView):
    """Trending items ("Trending now"), then popular ones, optionally of one category."""

    kind = "trending"

    @extend_schema(parameters=[RecommendationQuerySerializer],
                   responses={200: RecommendationPageSerializer, **errors(400, 429, 503)})
    def get(self, request, fastpath=None):
        params = self.query(request)
        variant, show = assigned(request, "trending", params)
        if not show:
            return self.page(request, [], params)
        recs = serving.trending(n=max_results(), category=params.get("category"), request=request,
                                algorithm=variant or params.get("algorithm"), exclude=params.get("exclude", ()))
        return self.page(request, recs, params, fastpath, variant)


def store_shared(request, recommendations, data, kind, params, fastpath, variant=None):
    """Store a response made for an anonymous visitor after the fast path's shared lookup missed.

    A page made only of the watched list's items (``kind``) is kept while that list and
    the items are unchanged; a page that shows fallback items (popular), whose list is not
    in the fingerprint, only for a minute. ``variant``: the experiment's variant the
    response was made for; it is stored for that variant's visitors only.
    """
    found = fastpath.shared
    user = getattr(request, "user", None)
    if found is None or (user is not None and user.is_authenticated):
        return
    if found.key != responses.response_key(request, responses.shared_subject(variant)):
        return
    shown = recommendations[params["offset"]:params["offset"] + params["limit"]]
    fresh = all(rec.kind == kind for rec in shown)
    responses.store(found, responses.encode(data),
                    rec_settings.CACHE_TIMEOUT if fresh else responses.SHORT_TIMEOUT)
