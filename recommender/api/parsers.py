"""Request parsers of the recommender API: bounded in size and in nesting.

DRF's ``JSONParser`` lets a ``RecursionError`` escape on deeply nested JSON
(``[[[[...]]]]`` 100,000 deep: HTTP 500), and DRF before 3.17.2 read JSON and form bodies
from the stream without Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` check. These parsers
answer both with a client error (docs/reliability.md).
"""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.utils.translation import gettext as _
from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser

from recommender.conf import rec_settings


def check_size(parser_context):
    """Raise ``RequestDataTooBig`` (HTTP 413) for a body longer than ``DATA_UPLOAD_MAX_MEMORY_SIZE``.

    Django's own check (in ``HttpRequest.body``) is bypassed by parsers that read the stream.
    """
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    request = (parser_context or {}).get("request")
    if limit is None or request is None:
        return
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except (TypeError, ValueError):
        length = 0
    if length > limit:
        raise RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")


def depth_of(data, limit):
    """The nesting depth of parsed JSON (a scalar: 0), counted without recursion up to ``limit + 1``."""
    deepest = 0
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        stack.extend((child, depth + 1) for child in value if isinstance(child, (dict, list)))
    return deepest


class BoundedJSONParser(JSONParser):
    """JSON no longer than ``DATA_UPLOAD_MAX_MEMORY_SIZE`` and no deeper than
    ``RECOMMENDER["API_MAX_JSON_DEPTH"]``; anything else is HTTP 400 (413 for the size)."""

    def parse(self, stream, media_type=None, parser_context=None):
        check_size(parser_context)
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(_("JSON parse error - nested too deeply.")) from None
        limit = rec_settings.API_MAX_JSON_DEPTH
        if limit is not None and depth_of(data, limit) > limit:
            raise ParseError(_("JSON parse error - nested deeper than %(limit)d levels.") % {"limit": limit})
        return data


class BoundedFormParser(FormParser):
    """A URL-encoded form no longer than ``DATA_UPLOAD_MAX_MEMORY_SIZE``."""

    def parse(self, stream, media_type=None, parser_context=None):
        check_size(parser_context)
        return super().parse(stream, media_type, parser_context)


#: The parsers of every recommender API view (DRF's defaults, bounded). Multipart bodies
#: are bounded by Django's own multipart parser.
PARSER_CLASSES = [BoundedJSONParser, BoundedFormParser, MultiPartParser]
