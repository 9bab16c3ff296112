"""Beat entries come from RECOMMENDER["SCHEDULE"]."""

import pytest
from django.test import override_settings

from recommender.training.schedules import beat_schedule, parse_crontab


def test_default_schedule_routes_to_queues():
    entries = beat_schedule()
    assert entries["recommender.train_all"]["task"] == "recommender.train_all"
    assert entries["recommender.train_all"]["options"] == {"queue": "recommender_training"}
    assert entries["recommender.refresh_all"]["options"] == {"queue": "recommender_refresh"}
    assert entries["recommender.train_all"]["schedule"] == parse_crontab("0 3 * * *")


def test_entries_can_be_disabled_and_errors_are_clear():
    with override_settings(RECOMMENDER={"ITEM_MODEL": "shop.Product",
                                        "SCHEDULE": {"train_all": "15 2 * * 1", "refresh_all": None}}):
        entries = beat_schedule()
    assert "recommender.refresh_all" not in entries  # None disables; other defaults stay
    assert "recommender.purge_anonymous" in entries
    assert entries["recommender.train_all"]["schedule"].hour == {2}
    with override_settings(RECOMMENDER={"ITEM_MODEL": "shop.Product", "SCHEDULE": {"train_everything": "* * * * *"}}):
        with pytest.raises(ValueError, match="unknown entry 'train_everything'"):
            beat_schedule()
    with pytest.raises(ValueError, match="five fields"):
        parse_crontab("hourly")


def test_the_demo_celery_app_installs_the_entries():
    from shopdemo.celery import app

    assert "recommender.retrain_if_new_data" in app.conf.beat_schedule
