"""Cron and interval maths: crontab lines (``cron``) and a schedule's fires with
its zone, DST and business-day rules (``fires``). Pure, with time passed in; imports
only domain."""
