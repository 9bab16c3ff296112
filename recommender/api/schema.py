"""OpenAPI documentation of the recommender API: the error answers every view shares and
the type of item keys, for drf-spectacular.

drf-spectacular is optional: without it, ``extend_schema`` and ``extend_schema_view`` are
no-ops and the descriptions below are built and ignored. ``tests/test_openapi.py`` checks
the served schema against the API's answers (``docs/api.md``).
"""

from django.db import models
from django.utils.translation import gettext_lazy as _

from recommender.api.serializers import ErrorSerializer
from recommender.conf import rec_settings

try:
    from drf_spectacular.extensions import OpenApiSerializerFieldExtension
    from drf_spectacular.plumbing import build_basic_type
    from drf_spectacular.types import OpenApiTypes
    from drf_spectacular.utils import (
        OpenApiParameter,
        OpenApiResponse,
        PolymorphicProxySerializer,
        extend_schema,
        extend_schema_view,
    )
except ImportError:  # the OpenAPI schema is optional
    OpenApiSerializerFieldExtension = None

    def extend_schema(*args, **kwargs):
        return lambda view: view

    extend_schema_view = extend_schema

    def OpenApiResponse(*args, **kwargs):  # noqa: N802 (stands in for the class)
        return None

    class OpenApiParameter:
        PATH = QUERY = None

        def __init__(self, *args, **kwargs):
            pass

    def PolymorphicProxySerializer(*args, **kwargs):  # noqa: N802
        return None

    class OpenApiTypes:
        OBJECT = STR = INT = None

__all__ = ["ITEM_ID", "RUN_ID", "OpenApiParameter", "OpenApiResponse", "OpenApiTypes", "PolymorphicProxySerializer",
           "errors", "extend_schema", "extend_schema_view"]

_ERRORS = {
    400: OpenApiResponse(
        OpenApiTypes.OBJECT,
        description=_('Invalid parameters or body: `{"<field>": ["<message>", ...]}`; for an event '
                      'batch `{"events": [{...}, ...]}` by position; a body that cannot be parsed: '
                      '`{"detail": "<message>"}`.')),
    403: OpenApiResponse(ErrorSerializer, description=_("Not allowed: not logged in, missing a model "
                                                        "permission, or a missing or wrong CSRF token.")),
    404: OpenApiResponse(ErrorSerializer, description=_("No such object.")),
    413: OpenApiResponse(ErrorSerializer, description=_("The body is over DATA_UPLOAD_MAX_MEMORY_SIZE.")),
    429: OpenApiResponse(ErrorSerializer, description=_("Throttled (RECOMMENDER['THROTTLE_RATES']): "
                                                        "the detail says when to try again.")),
    503: OpenApiResponse(ErrorSerializer, description=_("The database is unavailable; try again later.")),
}


#: The ``id`` of ``items/<str:pk>/...``: any text without a slash (with one, the URL matches
#: no route: Django's HTML 404).
ITEM_ID = OpenApiParameter("id", {"type": "string", "pattern": "^[^/]+$"}, OpenApiParameter.PATH,
                           description=_("Primary key of the item."))
#: The ``id`` of ``training-runs/<int:pk>/``: digits only (a minus sign matches no route).
RUN_ID = OpenApiParameter("id", {"type": "integer", "minimum": 0}, OpenApiParameter.PATH,
                          description=_("Id of the training run."))


def errors(*codes, **described):
    """The documented error answers ``codes`` (``{code: OpenApiResponse}``); ``described``
    (``e403="..."``) replaces the description of one of them."""
    responses = {code: _ERRORS[code] for code in codes}
    for key, description in described.items():
        code = int(key.lstrip("e"))
        responses[code] = OpenApiResponse(ErrorSerializer, description=description)
    return responses


if OpenApiSerializerFieldExtension is not None:

    class ItemKeyFieldExtension(OpenApiSerializerFieldExtension):
        """:class:`~recommender.api.serializers.ItemKeyField`: the JSON type of the item model's
        primary key (an integer for an ``AutoField``), read when the schema is made."""

        target_class = "recommender.api.serializers.ItemKeyField"

        def map_serializer_field(self, auto_schema, direction):
            field = rec_settings.item_model()._meta.pk
            while field.is_relation:  # a one-to-one primary key: the key it points at
                field = field.target_field
            if isinstance(field, (models.IntegerField, models.AutoField)):
                return build_basic_type(OpenApiTypes.INT)
            if isinstance(field, models.UUIDField):
                return build_basic_type(OpenApiTypes.UUID)
            return build_basic_type(OpenApiTypes.STR)
