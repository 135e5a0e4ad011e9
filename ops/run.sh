#!/bin/sh
# `make run`: the suite of supervisord.conf in the foreground, and whether it came up.
#
#   sh ops/run.sh [BIN [CONFIG [WAIT]]]   (defaults: .venv/bin config/outboxd.yaml 60)
#
# supervisord runs in the background of this shell, its own output in
# var/log/supervisord.out (its log: var/log/supervisord.log). `outboxd status --wait`
# then says "ready" with every program's state, or names what is not ready with
# its last log lines; either way the suite stays in the foreground until Ctrl-C
# (or TERM): supervisord is stopped (every program drained) and waited for.
# Run from the directory holding supervisord.conf.
set -u
umask 077 # var/, its logs and the database: the owner's alone
BIN=${1:-.venv/bin}
CONFIG=${2:-config/outboxd.yaml}
WAIT=${3:-60}
CONF=supervisord.conf
STATUS="$BIN/outboxd status -c $CONFIG --supervisor $CONF"

$STATUS >/dev/null 2>&1
case $? in
0 | 1)
    echo "outboxd: a supervisord already answers for $CONF (make run in another shell?)" >&2
    echo "outboxd: see it with $BIN/supervisorctl -c $CONF status, stop it with ... shutdown" >&2
    exit 69
    ;;
esac

mkdir -p var/log
"$BIN/supervisord" -c "$CONF" >var/log/supervisord.out 2>&1 &
sup=$!

stop() {
    trap '' INT TERM
    echo "outboxd: stopping the suite (each program drains first)"
    kill -TERM "$sup" 2>/dev/null
    wait "$sup"
    exit 130
}
trap stop INT TERM

echo "outboxd: supervisord started (pid $sup); waiting up to ${WAIT}s for every program"
$STATUS --wait "$WAIT" --tail 20
code=$?
if ! kill -0 "$sup" 2>/dev/null; then
    echo "outboxd: supervisord exited; its last words (var/log/supervisord.out):" >&2
    tail -n 20 var/log/supervisord.out >&2
    wait "$sup"
    exit 69
fi
case $code in
0) echo "outboxd: ready" ;;
69) echo "outboxd: supervisord does not answer yet; see var/log/supervisord.log" ;;
*) echo "outboxd: not ready: see above; the rest runs on (after a fix:" \
    "$BIN/supervisorctl -c $CONF start NAME)" ;;
esac
echo "outboxd: the suite runs in the foreground; Ctrl-C stops it. In another shell:"
echo "outboxd:   $BIN/outboxd status -c $CONFIG"
echo "outboxd:   $BIN/supervisorctl -c $CONF status"
echo "outboxd:   $BIN/outboxd stats -c $CONFIG"
echo "outboxd: a 10-minute tour of the demo: docs/tour.md"
wait "$sup"
code=$?
# a trapped signal ends `wait` early: stop() exits; here supervisord ended on its own
echo "outboxd: supervisord exited (status $code)"
exit "$code"
