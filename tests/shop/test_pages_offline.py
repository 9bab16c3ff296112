"""Demo pages load nothing from outside the site, and browsers find a favicon everywhere."""

import re

import pytest


def _outside_links(html):
    return [url for url in re.findall(r'(?:href|src)="(https?://[^"]+)"', html)
            if not url.startswith("http://testserver")]


@pytest.mark.django_db
def test_redoc_and_swagger_load_nothing_from_outside(client):
    for url in ["/api/redoc/", "/api/docs/"]:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert _outside_links(html) == [], (url, _outside_links(html))
        assert "fonts.googleapis.com" not in html


@pytest.mark.django_db
def test_favicon(client, admin_client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("shop/favicon.svg")
    assert 'rel="icon"' in admin_client.get("/admin/").content.decode()
