"""Offline evaluation of the engines on CSV files (no database rows needed)."""

import json
import os

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from recommender.conf import rec_settings


class Command(BaseCommand):
    help = (
        "Evaluate recommender algorithms on CSV files with full ranking over the catalog. "
        "Interactions use the import format (user_id,item_id,event,value,timestamp[,ref][,context]; "
        "naive timestamps in TIME_ZONE; event weights from RECOMMENDER['EVENT_WEIGHTS']); items use "
        "item_id,title,description,category,tags. A (user, item) pair is a positive when its event "
        "weights add up to more than 0, as in training (impressions and cart removals never are). "
        "Without --test, the last 20%% of each user's positives are held out."
    )

    def add_arguments(self, parser):
        parser.add_argument("--interactions", required=True, help="training interactions CSV (.csv/.csv.gz)")
        parser.add_argument("--test", help="held-out interactions CSV; used as given")
        parser.add_argument("--items", help="items CSV, for content-based and deep models")
        parser.add_argument("--k", type=int, default=10, help="cut-off of the metrics (default 10)")
        parser.add_argument("--algorithms", nargs="+", default=["popular", "itemknn", "ease", "als"],
                            help="engine names (popular, trending, itemknn, cooccurrence, ease, als, "
                                 "content, two_tower, hybrid) or dotted class paths")
        parser.add_argument("--json", action="store_true", help="print the table as JSON")

    def handle(self, interactions, test=None, items=None, k=10, algorithms=(), **opts):
        from recommender.engine.evaluation import evaluate_csv, format_table

        for path in filter(None, (interactions, test, items)):
            if not os.path.exists(path):
                raise CommandError(f"{path}: no such file")
        if k < 1:
            raise CommandError("--k must be at least 1")
        if ({"content", "two_tower"} & set(algorithms)) and not items:
            raise CommandError("content and two_tower need --items")
        try:
            table = evaluate_csv(interactions, test_path=test, items_path=items, k=k,
                                 algorithms=tuple(algorithms), event_weights=rec_settings.event_weights,
                                 tz=timezone.get_default_timezone())
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if opts["json"]:
            self.stdout.write(_json_dumps(table))
        else:
            self.stdout.write(format_table(table))


def _json_dumps(table):
    return json.dumps(table, indent=2, default=float)
