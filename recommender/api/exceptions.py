"""The exception handler of the recommender API views: JSON answers for what DRF leaves to Django.

DRF's handler answers its own exceptions, ``Http404`` and ``PermissionDenied``; anything
else reaches Django, which answers with an HTML page. Here:

- ``RequestDataTooBig`` (a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``): HTTP 413;
- ``TooManyFieldsSent`` / ``TooManyFilesSent`` and other ``SuspiciousOperation``: HTTP 400;
- ``DatabaseError`` (``OperationalError``, ``InterfaceError``...: the database is down or
  unreachable): HTTP 503, with the error logged on ``recommender.api``;

each as ``{"detail": "..."}``, then the site's own ``REST_FRAMEWORK["EXCEPTION_HANDLER"]``
makes the response. The views set it themselves (``get_exception_handler``), so the site's
settings need no change.
"""

import logging

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent, TooManyFilesSent
from django.db import DatabaseError
from django.utils.translation import gettext_lazy as _
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger("recommender.api")


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The request body is too large.")
    default_code = "payload_too_large"


class ServiceUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = _("The service is temporarily unavailable; try again later.")
    default_code = "service_unavailable"


def as_api_exception(exc):
    """The DRF exception that answers ``exc``, or ``exc`` itself."""
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge()
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        return ParseError(_("The request has too many fields or files."))
    if isinstance(exc, SuspiciousOperation):
        return ParseError(_("Bad request."))
    if isinstance(exc, DatabaseError):
        logger.error("Database error in the recommender API: HTTP 503", exc_info=exc)
        return ServiceUnavailable()
    return exc


def exception_handler(exc, context):
    """DRF exception handler: ``as_api_exception``, then the site's configured handler."""
    handler = api_settings.EXCEPTION_HANDLER
    if handler is exception_handler:  # the site made this one its global handler
        handler = drf_exception_handler
    return handler(as_api_exception(exc), context)
