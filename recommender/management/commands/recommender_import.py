"""Bulk-load historic interactions from CSV (user_id,item_id,event,value,timestamp[,ref][,context])."""

import os

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from recommender.tracking.importer import ImportFailed, import_rows, open_csv, read_csv


class Command(BaseCommand):
    help = (
        "Import interactions from a CSV file with the header user_id,item_id,event,value,timestamp "
        "and optionally ref and context (.csv or .csv.gz; naive timestamps in TIME_ZONE). All or "
        "nothing: a bad row or an unreadable file names its line and nothing is stored. Importing "
        "the same file again adds nothing; rows that are otherwise identical are told apart by "
        "their ref (e.g. the order id)."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="CSV file (.csv or .csv.gz)")
        parser.add_argument("--item-field", help="item field matched by item_id "
                            "(default: ITEM_FIELDS['external_id'] or the primary key)")
        parser.add_argument("--user-field", help="user field matched by user_id (default: USER_ID_FIELD)")
        parser.add_argument("--batch-size", type=int, help="rows per INSERT (default: IMPORT_BATCH_SIZE)")
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    def handle(self, path, item_field=None, user_field=None, batch_size=None, no_progress=False, **opts):
        if not os.path.exists(path):
            raise CommandError(f"{path}: no such file")
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        # disable=None: no bar when stderr is not a terminal (logs, CI)
        bar = tqdm(unit=" rows", disable=True if no_progress or opts["verbosity"] == 0 else None,
                   file=self.stderr._out, mininterval=0.5)

        def progress(done):
            bar.update(done - bar.n)

        try:
            with open_csv(path) as fh:
                result = import_rows(read_csv(fh), item_field=item_field, user_field=user_field,
                                     batch_size=batch_size, progress=progress)
        except ImportFailed as exc:
            raise CommandError(f"{path}: nothing was imported.\n{exc}") from None
        except OSError as exc:
            raise CommandError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        finally:
            bar.close()
        self.stdout.write(self.style.SUCCESS(
            f"Imported {result.created} interactions from {result.rows} rows "
            f"({result.skipped} already present)."
        ))
