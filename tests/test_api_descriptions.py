"""The browsable API shows code spans as code, not as literal backticks."""

import pytest
from rest_framework.test import APIClient


@pytest.mark.django_db
def test_browsable_api_description_has_no_literal_backticks():
    response = APIClient().get("/recommender/api/recommendations/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<code>?user=&lt;pk&gt;</code>" in html
    assert "``" not in html and "`?user" not in html


def test_plain_description_drops_the_backticks():
    from recommender.api.recommendations import RecommendationsView

    text = RecommendationsView().get_view_description(html=False)
    assert "?user=<pk>" in text and "`" not in text
