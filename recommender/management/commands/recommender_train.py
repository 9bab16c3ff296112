"""Train recommender algorithms now, on the workers or in this process."""

import threading

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from recommender.conf import rec_settings
from recommender.models import TrainingRun
from recommender.training import refresh, services


class Command(BaseCommand):
    help = ("Train algorithms (default: TRAIN_ALGORITHMS). Without --sync the runs are queued for "
            "the Celery workers; with --sync they train here, one after the other, and the served "
            "lists are refreshed here too.")

    def add_arguments(self, parser):
        parser.add_argument("--algorithm", action="append", dest="algorithms", metavar="NAME",
                            help="an algorithm of RECOMMENDER['ALGORITHMS'] (repeatable)")
        parser.add_argument("--sync", action="store_true", help="train in this process and wait")
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    def handle(self, algorithms=None, sync=False, no_progress=False, **opts):
        try:
            runs = services.enqueue_training(algorithms, requested_by="recommender_train") if not sync \
                else self._specs(algorithms)
        except services.TrainingError as exc:
            raise CommandError(str(exc)) from None
        if not sync:
            for run in runs:
                self.stdout.write(f"Queued {run.algorithm} as run #{run.pk} on queue "
                                  f"{rec_settings.TRAINING_QUEUE}.")
            return
        failed = 0
        for name, params in runs:
            # Each run row is written just before it trains: a row left queued while the ones
            # before it train would look like a lost task to fail_stale_runs, which re-sends it.
            run = TrainingRun.objects.create(algorithm=name, params=params, requested_by="recommender_train --sync")
            run = self._train(run, disable=no_progress or opts["verbosity"] == 0)
            if run.status == TrainingRun.Status.SUCCEEDED:
                ndcg = run.metrics.get("ndcg")
                self.stdout.write(self.style.SUCCESS(
                    f"{run.algorithm}: run #{run.pk} succeeded in {run.metrics.get('train_seconds', 0):.1f}s, "
                    f"NDCG@10 {ndcg if ndcg is None else round(ndcg, 4)}; {run.gate}"))
                if run.is_active:
                    written = sum(refresh.refresh_chunk(run.algorithm, run.pk, kind, start, stop)
                                  for kind, start, stop in refresh.plan(run.algorithm)[1])
                    self.stdout.write(f"  published {written} served lists")
            else:
                failed += 1
                self.stderr.write(self.style.ERROR(f"{run.algorithm}: run #{run.pk} failed: {run.error}"))
        if failed:
            raise CommandError(f"{failed} of {len(runs)} trainings failed (see the admin for tracebacks).")

    def _specs(self, algorithms):
        """(name, params) of each algorithm to train; an unknown name fails before any trains."""
        names = list(dict.fromkeys(algorithms or rec_settings.TRAIN_ALGORITHMS))
        return [(name, services.algorithm_spec(name)[1]) for name in names]

    def _train(self, run, disable):
        # disable=None: no bar when stderr is not a terminal (logs, CI)
        bar = tqdm(total=100, desc=run.algorithm, disable=True if disable else None, file=self.stderr._out,
                   bar_format="{desc:>14} {percentage:3.0f}%|{bar}| {postfix}")
        done = threading.Event()

        def watch():  # the training writes its progress to the run row
            while not done.wait(0.5):
                row = TrainingRun.objects.filter(pk=run.pk).values("progress", "progress_message").first()
                if row:
                    bar.n = round(row["progress"] * 100)
                    bar.set_postfix_str(row["progress_message"])

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            return services.train(run.pk, refresh=False)
        finally:
            done.set()
            watcher.join()
            bar.n = 100
            bar.close()
