"""Record lane: what visitors do with products reaches the ``Interaction`` table.

- :mod:`recommender.tracking.events`: ``track()`` from Python (one INSERT), the
  visitor of a request, the merge of an anonymous session's history at login.
- :mod:`recommender.tracking.csvformat`: the CSV format (columns, timestamps, values)
  and the rules for a valid event value and context; Django-free, shared with the engine.
- :mod:`recommender.tracking.importer`: bulk CSV import and export of interactions.

The REST endpoint (``recommender.api.views``) and the template tags record through
the same functions.
"""
