"""Every ``outboxd`` command's arguments, and the function that runs it named by
its path (``module:function``), imported only once the command line is parsed:
``outboxd --help`` and a mistyped option load no configuration, database driver
or web framework. Imports only the standard library and light values of domain."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from daemon import __version__
from daemon.cli.roles import ROLE_START, RUN_HELP, common_options, run_arguments
from daemon.domain.auth import ROLES as TOKEN_ROLES
from daemon.domain.limits import MAX_BATCH, MAX_PAGE, REASON_MAX
from daemon.domain.search import SEARCH_FIELDS, TEXT_RULE
from daemon.domain.statuses import NOTIFICATION_EVENTS, RUN_STATUSES, STATUSES
from daemon.domain.tracking import VISIT_TROUBLES

Add = Callable[[str, str, str], argparse.ArgumentParser]


def subcommands(
    parser: argparse.ArgumentParser, common: argparse.ArgumentParser, dest: str, metavar: str
) -> Add:
    """The function that adds a subcommand (its name, the path of what runs it, its
    help) under ``parser``, each taking ``common``'s options."""
    sub = parser.add_subparsers(dest=dest, required=True, metavar=metavar)

    def add(name: str, target: str, text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, parents=[common], help=text, description=text)
        cmd.set_defaults(target=target)
        return cmd

    return add


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="outboxd", description="Reliable outbox delivery.", parents=[common]
    )
    parser.add_argument("--version", action="version", version=f"outboxd {__version__}")
    add = subcommands(parser, common, "command", "COMMAND")
    _system(add)
    _status(add)
    _messages(add)
    _browse(add, common)
    _schedules(add, common)
    _tokens(add, common)
    _audit(add)
    return parser


def _system(add: Add) -> None:
    add(
        "check-config",
        "daemon.cli.system:cmd_check_config",
        "validate the YAML file and summarise it",
    )
    add("migrate", "daemon.cli.system:cmd_migrate", "create or upgrade the database schema")
    backup = add(
        "backup",
        "daemon.cli.backup:cmd_backup",
        "copy the SQLite database to FILE while the suite runs, checked before it is named "
        "FILE (PostgreSQL: use pg_dump)",
    )
    backup.add_argument("file", metavar="FILE", help="where to write the copy (made 0600)")
    backup.add_argument("--force", action="store_true", help="replace FILE if it exists")
    run_arguments(add("run", ROLE_START, RUN_HELP))


def _status(add: Add) -> None:
    cmd = add(
        "status",
        "daemon.cli.status:cmd_status",
        "every program supervisord runs and outboxd's /healthz; exit 0 when all are ready",
    )
    cmd.add_argument(
        "--supervisor",
        metavar="URL_OR_SOCKET",
        default=None,
        help="unix://PATH, http://HOST:PORT, a socket or a supervisord.conf (default: "
        "$OUTBOXD_SUPERVISOR, else ./supervisord.conf, else ./var/supervisor.sock)",
    )
    cmd.add_argument("--json", action="store_true", help="print JSON")
    cmd.add_argument(
        "--wait",
        metavar="SECONDS",
        type=float,
        default=0.0,
        help="ask again until all are ready, one is FATAL, or SECONDS pass",
    )
    cmd.add_argument(
        "--tail",
        metavar="LINES",
        type=int,
        default=0,
        help="print the last LINES log lines of each program not ready",
    )


def listed(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    """The type of an option that takes several of ``choices``, comma-separated
    (``--status failed,cancelled``) or the option repeated (``action="extend"``)."""

    def read(text: str) -> list[str]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        for value in values:
            if value not in choices:
                shown = ", ".join(repr(c) for c in choices)
                raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {shown})")
        if not values:
            raise argparse.ArgumentTypeError("give one or more, separated by commas")
        return values

    return read


def add_filter_arguments(parser: argparse.ArgumentParser, ids: bool) -> None:
    """``--id``, ``--channel``, ``--status``, ``--kind``, ``--key``, ``--since``,
    ``--until``, ``--q`` and the search fields (``--mrn``, …): the options that
    select messages."""
    if ids:
        parser.add_argument("--id", action="append", metavar="ID[,ID…]")
    parser.add_argument("--channel")
    parser.add_argument(
        "--status",
        action="extend",
        type=listed(STATUSES),
        metavar="STATUS[,STATUS…]",
        help=f"any of {', '.join(STATUSES)}; again or comma-separated for several",
    )
    parser.add_argument("--kind")
    parser.add_argument("--key", metavar="PREFIX", help="keys beginning so (with --channel)")
    parser.add_argument("--since", metavar="TIME|AGE", help="created at or after")
    parser.add_argument("--until", metavar="TIME|AGE", help="created before")
    parser.add_argument(
        "--q",
        metavar="TEXT",
        help=f"payloads holding this text, in any case ({TEXT_RULE}); a search covers every "
        "message stored unless --since is given",
    )
    for name, (what, where) in SEARCH_FIELDS.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            metavar="VALUE",
            help=f"messages stored with this {what} ({where} of an HL7 message), exactly",
        )


def add_reason(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reason",
        metavar="TEXT",
        help=f"why (a ticket number, a few words; at most {REASON_MAX}): kept in the audit",
    )


def _messages(add: Add) -> None:
    m = "daemon.cli.messages:"
    enqueue = add(
        "enqueue", m + "cmd_enqueue", "store one message for delivery, or a batch (--batch)"
    )
    enqueue.add_argument("--channel")
    which = enqueue.add_mutually_exclusive_group(required=True)
    which.add_argument("--key", help="idempotency key, unique per channel")
    which.add_argument(
        "--batch",
        metavar="FILE|-",
        help="JSON Lines, each a message as POST /api/v1/messages takes it ({channel, key, "
        f"payload, kind?, after?, group?}}), stored {MAX_BATCH} to a transaction; prints how "
        "many were new, duplicates and refused (each refused line with its number)",
    )
    enqueue.add_argument("--after", metavar="KEY", help="a message of the channel to send first")
    enqueue.add_argument("--kind", help="payload kind (default from the channel)")
    enqueue.add_argument("--group", help="ordering key: on an ordered channel, one at a time")
    enqueue.add_argument("--json", action="store_true", help="print the result as JSON")
    enqueue.add_argument(
        "payload", nargs="?", metavar="FILE|-", help="the payload (default: standard input)"
    )

    stats = add("stats", m + "cmd_stats", "counts per channel and status, oldest pending age")
    stats.add_argument("--json", action="store_true")
    stats.add_argument("--window", default="1h", help="success-rate window (default 1h)")

    for name, text in (
        ("retry", "make failed, cancelled or pending messages due now, attempts reset"),
        ("cancel", "cancel pending or failed messages"),
        ("resend", "send sent, confirmed or rejected messages again"),
    ):
        op = add(name, f"{m}cmd_{name}", text)
        add_filter_arguments(op, ids=True)
        op.add_argument(
            "--dry-run", action="store_true", help="say how many would change; change nothing"
        )
        add_reason(op)

    visit = add("visit", m + "cmd_visit", "a visit's BPJS task progress")
    visit.add_argument("kodebooking")
    visit.add_argument("--source", help="the source, when several have this kodebooking")
    visit.add_argument("--json", action="store_true")

    t = "daemon.cli.tracked:"
    visits = add(
        "visits", t + "cmd_visits", "the visits that cannot go on (a step held, failed or "
        "cancelled), newest first, each with why",
    )  # fmt: skip
    visits.add_argument(
        "--problem",
        action="extend",
        type=listed(VISIT_TROUBLES),
        metavar="PROBLEM[,PROBLEM…]",
        help=f"any of {', '.join(VISIT_TROUBLES)} (default: any)",
    )
    visits.add_argument("--source", help="one source's visits")
    visits.add_argument("--limit", type=int, default=50, help=f"1 to {MAX_PAGE} (default 50)")
    visits.add_argument("--before", type=int, metavar="ID", help="the next page: the id printed")
    visits.add_argument("--json", action="store_true")
    receipts = add(
        "receipts", t + "cmd_receipts", "partners' callbacks as received (webhook receipts), "
        "newest first",
    )  # fmt: skip
    receipts.add_argument("--webhook", help="one webhook's")
    receipts.add_argument("--result", help="one result: applied, unchanged, unmapped_status, "
                          "unknown_message, unreadable")  # fmt: skip
    receipts.add_argument("--limit", type=int, default=50, help=f"1 to {MAX_PAGE} (default 50)")
    receipts.add_argument("--before", type=int, metavar="ID", help="the next page: the id printed")
    receipts.add_argument("--json", action="store_true")


def _browse(add: Add, common: argparse.ArgumentParser) -> None:
    b = "daemon.cli.browse:"
    messages = add("messages", "daemon.cli.parser:no_action", "messages: list, show")
    action = subcommands(messages, common, "action", "ACTION")
    listing = action("list", b + "cmd_list", "messages newest first, a page at a time")
    add_filter_arguments(listing, ids=False)
    listing.add_argument("--limit", default="50", help=f"per page, 1 to {MAX_PAGE} (default 50)")
    listing.add_argument("--cursor", help="the next page: the cursor the last page printed")
    listing.add_argument("--json", action="store_true")
    show = action("show", b + "cmd_show", "one message, its status events and operator actions")
    show.add_argument("id", metavar="ID")
    show.add_argument(
        "--fields",
        action="store_true",
        help="an HL7 payload and answer field by field, each with its position (PID-3)",
    )
    show.add_argument("--json", action="store_true")


def _schedules(add: Add, common: argparse.ArgumentParser) -> None:
    s = "daemon.cli.schedules:"
    schedules = add(
        "schedules",
        "daemon.cli.parser:no_action",
        "schedules: list, show, add, edit, remove, pause, run, cancel …",
    )
    action = subcommands(schedules, common, "action", "ACTION")

    listing = action("list", s + "cmd_list", "every schedule with its next fire and last run")
    listing.add_argument("--json", action="store_true")
    show = action("show", s + "cmd_show", "a schedule, its next fires and its recent runs")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    for name, text in (
        ("add", "add a schedule of your own"),
        ("edit", "change a schedule of your own"),
    ):
        cmd = action(name, f"{s}cmd_{name}", text)
        cmd.add_argument("name")
        cmd.add_argument(
            "--job", required=name == "add",
            help="purge, export, status_check, report, http, command",
        )  # fmt: skip
        cmd.add_argument("--cron", metavar="EXPR")
        cmd.add_argument("--every", metavar="DURATION")
        cmd.add_argument("--timezone", metavar="ZONE")
        cmd.add_argument("--options", metavar="JSON", help="the job's options as a JSON object")
        cmd.add_argument(
            "--with", dest="rules", action="append", metavar="KEY=VALUE",
            help="any other setting (overlap=queue_one, catch_up=2h, skip=[weekends], …)",
        )  # fmt: skip
    remove = action("remove", s + "cmd_remove", "remove a schedule of your own (its runs stay)")
    remove.add_argument("name")
    pause = action("pause", s + "cmd_pause", "pause a schedule, saying why")
    pause.add_argument("name")
    pause.add_argument("--note", required=True, help="why (shown with the schedule)")
    add_reason(pause)
    resume = action("resume", s + "cmd_resume", "resume a paused schedule")
    resume.add_argument("name")
    add_reason(resume)
    run = action("run", s + "cmd_run_now", "run a schedule's job now (trigger manual)")
    run.add_argument("name")
    add_reason(run)
    cancel = action(
        "cancel", s + "cmd_cancel",
        "cancel a run: a queued one at once, a running one by its scheduler (not retried)",
    )  # fmt: skip
    cancel.add_argument("name")
    cancel.add_argument("run", type=int, metavar="RUN_ID", help="the run's id (outboxd runs NAME)")
    cancel.add_argument("--note", help="why (kept with the run and in the audit)")
    backfill = action("backfill", s + "cmd_backfill", "one run per fire of a time range")
    backfill.add_argument("name")
    backfill.add_argument("--from", dest="since", required=True, metavar="TIME|AGE")
    backfill.add_argument("--until", required=True, metavar="TIME|AGE")
    backfill.add_argument("--dry-run", action="store_true", help="say how many; queue nothing")
    add_reason(backfill)
    preview = action("preview", s + "cmd_preview", "the next fires of a schedule or an expression")
    preview.add_argument("name", nargs="?")
    preview.add_argument("--cron", metavar="EXPR")
    preview.add_argument("--every", metavar="DURATION")
    preview.add_argument("--timezone", metavar="ZONE")
    preview.add_argument("--with", dest="rules", action="append", metavar="KEY=VALUE")
    preview.add_argument("--from", dest="since", metavar="TIME|AGE", help="default: now")
    preview.add_argument("--count", type=int, default=10)
    preview.add_argument("--json", action="store_true")

    runs = add("runs", s + "cmd_runs", "a schedule's ledger: every fire and what became of it")
    runs.add_argument("name")
    runs.add_argument("--limit", type=int, default=50)
    runs.add_argument(
        "--status",
        action="extend",
        type=listed(tuple(RUN_STATUSES)),
        metavar="STATUS[,STATUS…]",
        help=f"only runs in these statuses ({', '.join(RUN_STATUSES)})",
    )
    runs.add_argument("--json", action="store_true")

    sent = add(
        "notifications", s + "cmd_notifications",
        "the notifications sent (alerts, their resolutions, reports), newest first",
    )  # fmt: skip
    sent.add_argument("--limit", type=int, default=50)
    sent.add_argument("--before", type=int, metavar="ID", help="older than this one (a page)")
    sent.add_argument("--rule", help="of this rule (run_failed:nightly, report:daily …)")
    sent.add_argument("--about", dest="subject", metavar="SUBJECT",
                      help="about this schedule or channel")  # fmt: skip
    sent.add_argument("--target", dest="notify_target", metavar="TARGET",
                      help="sent to this notify target")  # fmt: skip
    sent.add_argument(
        "--event", action="extend", type=listed(NOTIFICATION_EVENTS),
        metavar="EVENT[,EVENT…]", help=f"only these ({', '.join(NOTIFICATION_EVENTS)})",
    )  # fmt: skip
    sent.add_argument("--failed", action="store_true", help="only those the target did not take")
    sent.add_argument("--text", action="store_true", help="print each one's text too")
    sent.add_argument("--json", action="store_true")


def _audit(add: Add) -> None:
    audit = add(
        "audit",
        "daemon.cli.audit:cmd_audit",
        "operator actions, newest first (as GET /api/v1/audit)",
    )
    audit.add_argument(
        "--limit", type=int, default=100, help=f"entries, 1 to {MAX_PAGE} (default 100)"
    )
    audit.add_argument("--before", metavar="ID", help="entries older than this id (the next page)")
    audit.add_argument("--json", action="store_true", help="print the page as the API answers it")


def _tokens(add: Add, common: argparse.ArgumentParser) -> None:
    token = add("token", "daemon.cli.parser:no_action", "tokens of the control API: new")
    action = subcommands(token, common, "action", "ACTION")
    new = action(
        "new",
        "daemon.cli.tokens:cmd_token_new",
        "a new token, printed once, and the control.tokens line for it",
    )
    new.add_argument("--name", required=True, help="who the token is for")
    new.add_argument("--role", required=True, help=", ".join(TOKEN_ROLES))


def no_action(_args: argparse.Namespace) -> int:
    """A command that needs an action (``outboxd schedules list``) given none."""
    raise SystemExit("outboxd: give an action (see --help)")
