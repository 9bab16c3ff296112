"""View descriptions for the browsable API and OPTIONS: the docstring, with its
```code``` spans shown as code instead of literal backticks (DRF renders Markdown only
when the ``markdown`` package is installed)."""

import re

from django.utils.html import escape
from django.utils.safestring import mark_safe
from rest_framework.utils import formatting

_CODE = re.compile(r"``?([^`]+?)``?")


class DescribedView:
    """Mixin of the app's API views: ``get_view_description`` without literal backticks."""

    def get_view_description(self, html=False):
        text = formatting.dedent(self.__class__.__doc__ or "")
        if not html:
            return _CODE.sub(r"\1", text)
        paragraphs = [part for part in re.split(r"\n\s*\n", text) if part.strip()]
        return mark_safe("".join(
            "<p>" + _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", escape(part)).replace("\n", " ") + "</p>"
            for part in paragraphs))
