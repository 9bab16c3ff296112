"""Train lane: interactions become versioned models and precomputed lists.

- :mod:`~recommender.training.dataset`: the one bridge from the ORM to numpy (rows to a
  CSR matrix and id <-> index maps), streamed from the database.
- :mod:`~recommender.training.services`: orchestration: build the data, fit the engine,
  evaluate, gate, save the artifact, record the run, activate, roll back.
- :mod:`~recommender.training.artifacts`: trained models on disk (``ARTIFACT_DIR``).
- :mod:`~recommender.training.refresh`: chunks of users and items scored into the served
  lists (:mod:`recommender.serving.published`).
- :mod:`~recommender.training.dispatch`: sends the Celery tasks by name, so the
  orchestration never imports the task module.
- :mod:`~recommender.training.follow`: a logged-in user's events queue the re-scoring of
  their "recommended for you" list (debounced; the task calls ``refresh.refresh_user``).
- :mod:`~recommender.training.tasks`: the ``@shared_task`` entry points (they only delegate).
- :mod:`~recommender.training.schedules`: beat entries for the site's Celery app.

Nothing here runs on a web request except queueing a run or a user's re-scoring.
"""
