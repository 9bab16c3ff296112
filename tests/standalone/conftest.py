"""Fixtures of the standalone site (``tests.standalone.settings``)."""

from decimal import Decimal

import pytest


@pytest.fixture
def gadgets(db):
    from tests.standalone.catalog.models import Gadget

    kinds = ["lamp", "lamp", "lamp", "clock", "clock", "clock", "kettle", "kettle"]
    return [Gadget.objects.create(name=f"Gadget {i}", blurb=f"a fine {kind}", kind=kind,
                                  cost=Decimal("9.99") + i, sku=f"G-{i:03d}", on_sale=i != 7)
            for i, kind in enumerate(kinds)]
