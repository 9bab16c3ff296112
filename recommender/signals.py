"""Signal receivers: they record, they never train."""

from django.contrib.auth.signals import user_logged_in


def on_login(sender, request, user, **kwargs):
    from recommender.analytics import experiments
    from recommender.tracking.events import merge_anonymous

    if request is not None:
        # before the merge forgets the anonymous key: the visitor keeps their experiment variants
        experiments.carry_at_login(request, user)
    if request is not None and merge_anonymous(request, user):
        from recommender.training import follow

        follow.events_recorded(user.pk)  # the merged history changes the user's list


def connect():
    from django.contrib.auth import get_user_model

    from recommender import serving
    from recommender.fastpath import identity
    from recommender.training import follow

    user_logged_in.connect(
        on_login, sender=get_user_model(), dispatch_uid="recommender.merge_anonymous"
    )
    serving.connect()  # cache invalidation on item changes and purchases
    identity.connect()  # a changed user's cached auth record is dropped
    follow.connect()  # a logged-in user's events re-score their list (a task, after the commit)
