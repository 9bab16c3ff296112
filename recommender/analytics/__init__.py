"""Online results: attribution, daily aggregates, experiments."""
