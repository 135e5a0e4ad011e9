"""Start-up costs: the CPU one ``outboxd`` call spends, and the time from a
dispatcher's exec to its first delivered message.

Each figure is the median of ``--repeat`` runs (default 5), with the smallest and the
largest beside it:

- ``outboxd --help``: CPU seconds (user + sys) of the whole process;
- ``outboxd enqueue`` of one HL7 message into a SQLite database: CPU seconds;
- ``outboxd enqueue --batch`` of 2,000 HL7 messages (JSON Lines), where the command
  has ``--batch``: CPU seconds;
- a dispatcher started as supervisord starts it (``outboxd run dispatcher``), one
  message waiting: wall milliseconds from the exec to the moment the message
  reaches a local MLLP peer (a peer of this script's, answering AA at once), and
  the CPU milliseconds (user + sys, from /proc) the dispatcher and its store worker
  had spent by that moment: on a loaded machine the wall time is mostly waiting for
  a core, and the CPU time is what a start costs;
- with ``--only instructions`` (valgrind needed; not in the default set, a run takes
  half a minute): the same start under valgrind's callgrind, and the instructions
  the dispatcher executed from its exec to the moment its first message reached the
  peer (the peer holds its answer back until callgrind has written the count). A
  count hardly moves with the machine's load: the figure to compare two versions
  by on a shared machine, where milliseconds move by a sixth from hour to hour.

The commands run with their bytecode cached, as an installed package does:
``PYTHONDONTWRITEBYTECODE`` is dropped from their environment, so the warm-up run
writes the ``__pycache__`` of a checkout that has none (without it, every start
compiles outboxd's modules again: about 0.15 s more).

``--vs PATH`` measures a second ``outboxd`` (another checkout's console script) in
turns with the first and prints the ratios, run by run: a figure and its ratio hold
on a shared, noisy machine where a single absolute time would not.

    .venv/bin/python ops/bench/startup.py
    .venv/bin/python ops/bench/startup.py --vs ../older-checkout/.venv/bin/outboxd
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUTBOXD = ROOT / ".venv" / "bin" / "outboxd"
BATCH = 2000
# The commands run in a directory of their own, so no checkout's ``daemon`` in the
# current directory shadows the one the measured command has installed.
WORKDIR = tempfile.gettempdir()
START_TIMEOUT = 60.0  # seconds a dispatcher may take to deliver its first message
SB, EB, CR = b"\x0b", b"\x1c", b"\r"  # MLLP framing

HL7 = (
    "MSH|^~\\&|BENCH|CLINIC|HIE|HIE|20261205083000||ADT^A04^ADT_A01|{id}|P|2.5.1\r"
    "EVN|A04|20261205083000\r"
    "PID|1||{id}^^^CLINIC^MR||DOE^JANE||19800101|F\r"
    "PV1|1|O|CLINIC^^^^^^^^OPD||||1234^SMITH^JOHN\r"
)


# the environment of the commands measured: bytecode cached (see above)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_ms(pid: int) -> float | None:
    """The CPU milliseconds (user + sys) process ``pid`` has spent so far; None
    without /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (a dispatcher's store worker)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return [int(c) for task in tasks for c in (task / "children").read_text().split()]
    except OSError:
        return []


class Peer:
    """An MLLP peer on a thread: notes when the first frame arrives (and the CPU the
    process ``watched`` and its children had spent by then), answers AA."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.first: float | None = None
        self.watched: int | None = None  # the dispatcher's pid
        self.cpu: tuple[float | None, float | None] = (None, None)  # it, its children
        self.arrived = threading.Event()
        self.hold: threading.Event | None = None  # set: answer the first frame once it is
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while EB + CR in buffer:
                    frame, _, buffer = buffer.partition(EB + CR)
                    if self.first is None:
                        self.first = time.monotonic()
                        if self.watched is not None:
                            kids = [cpu_ms(c) for c in children(self.watched)]
                            self.cpu = (cpu_ms(self.watched), sum(k or 0.0 for k in kids))
                        self.arrived.set()
                        hold = self.hold
                        if hold is not None:  # the sender's count taken first
                            hold.wait(VALGRIND_TIMEOUT)
                    message = frame.lstrip(SB).decode("utf-8", "replace")
                    control = message.split("\r", 1)[0].split("|")[9]
                    ack = (
                        "MSH|^~\\&|HIE|HIE|BENCH|CLINIC|20261205083001||ACK|A"
                        f"{control}|P|2.5.1\rMSA|AA|{control}\r"
                    )
                    conn.sendall(SB + ack.encode() + EB + CR)

    def close(self) -> None:
        self.listener.close()


class Setup:
    """A directory with a YAML file: a SQLite database, one MLLP channel to ``peer``."""

    def __init__(self, peer_port: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="outboxd-startup-"))
        self.config = self.dir / "outboxd.yaml"
        base = free_port()
        self.config.write_text(
            f"database: sqlite:///{self.dir}/outboxd.db\n"
            "channels:\n"
            "  hie:\n"
            "    kind: mllp\n"
            "    host: 127.0.0.1\n"
            f"    port: {peer_port}\n"
            "roles:\n"
            f"  dispatcher: {{base_port: {base}}}\n"
            f"  poller: {{base_port: {free_port()}}}\n"
            f"  scheduler: {{base_port: {free_port()}}}\n"
            f"  control: {{base_port: {free_port()}}}\n"
        )
        self.payload = self.dir / "message.hl7"
        self.payload.write_text(HL7.format(id="M1"))
        self.batch = self.dir / "batch.jsonl"
        with self.batch.open("w") as out:
            for n in range(BATCH):
                item = {"channel": "hie", "key": f"b{n}", "payload": HL7.format(id=f"B{n}")}
                out.write(json.dumps(item) + "\n")

    def fresh_database(self, outboxd: str) -> None:
        for suffix in ("", "-wal", "-shm"):
            (self.dir / f"outboxd.db{suffix}").unlink(missing_ok=True)
        run_quietly([outboxd, "migrate", "-c", str(self.config)])

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def run_quietly(argv: Sequence[str], stdin: Path | None = None) -> None:
    """Run ``argv`` to its end; a failure stops the benchmark with the command's own
    words."""
    with open(stdin or os.devnull, "rb") as given:
        process = subprocess.Popen(
            argv,
            stdin=given,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=WORKDIR,
            env=ENV,
        )
        out, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv)} exited {process.returncode}: {(err or out).decode().strip()}"
        )


def cpu_of(argv: Sequence[str], stdin: Path | None = None) -> float:
    """The CPU seconds (user + sys) one run of ``argv`` spends, from the kernel's own
    accounting of the finished child."""
    before = os.times()
    run_quietly(argv, stdin)
    after = os.times()
    return (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )


def one_waiting(outboxd: str, setup: Setup, peer: Peer) -> None:
    """A fresh database with one message waiting for the peer, and the peer told
    that nothing has arrived yet."""
    setup.fresh_database(outboxd)
    run_quietly(
        [outboxd, "enqueue", "-c", str(setup.config), "--channel", "hie", "--key", "m1",
         str(setup.payload)]
    )  # fmt: skip
    peer.first, peer.watched, peer.cpu = None, None, (None, None)
    peer.arrived.clear()


def stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM to a dispatcher; SIGKILL to its session if it is not gone in
    ``timeout`` seconds."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def first_delivery(outboxd: str, setup: Setup, peer: Peer) -> dict[str, float]:
    """Milliseconds from a dispatcher's exec to its first message at the peer (wall),
    and the CPU milliseconds the dispatcher and its store worker had spent by then."""
    one_waiting(outboxd, setup, peer)
    log_file = open(setup.dir / "dispatcher.log", "wb")  # noqa: SIM115 - closed below
    started = time.monotonic()
    process = subprocess.Popen(
        [outboxd, "run", "dispatcher", "-c", str(setup.config)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=WORKDIR,
        env=ENV,
    )
    peer.watched = process.pid
    try:
        if not peer.arrived.wait(START_TIMEOUT):
            tail = (setup.dir / "dispatcher.log").read_text(errors="replace")[-2000:]
            raise SystemExit(f"no message delivered within {START_TIMEOUT:g}s:\n{tail}")
        assert peer.first is not None
        out = {FIRST: (peer.first - started) * 1000.0}
        parent, worker = peer.cpu
        if parent is not None:
            out[FIRST_CPU] = parent
            out[FIRST_CPU_WORKER] = worker or 0.0
            out[FIRST_CPU_BOTH] = parent + (worker or 0.0)
        return out
    finally:
        stop(process, 30)
        log_file.close()


def first_delivery_instructions(outboxd: str, setup: Setup, peer: Peer) -> dict[str, float]:
    """Millions of instructions a dispatcher executes from its exec to its first
    message at the peer, counted by callgrind (its store worker not included)."""
    one_waiting(outboxd, setup, peer)
    peer.hold = threading.Event()
    counts = setup.dir / "callgrind.out"
    log_file = open(setup.dir / "dispatcher.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={counts}",
         outboxd, "run", "dispatcher", "-c", str(setup.config)],
        stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, cwd=WORKDIR,
        env=ENV,
    )  # fmt: skip
    try:
        if not peer.arrived.wait(VALGRIND_TIMEOUT):
            tail = (setup.dir / "dispatcher.log").read_text(errors="replace")[-2000:]
            raise SystemExit(f"no message delivered within {VALGRIND_TIMEOUT:g}s:\n{tail}")
        subprocess.run(
            ["callgrind_control", "--dump", str(process.pid)],
            check=True, capture_output=True, timeout=VALGRIND_TIMEOUT,
        )  # fmt: skip
        return {FIRST_INSTRUCTIONS: dumped_total(setup.dir) / 1e6}
    finally:
        peer.hold.set()
        peer.hold = None
        stop(process, VALGRIND_TIMEOUT)
        log_file.close()
        for dump in setup.dir.glob("callgrind.out*"):
            dump.unlink()


def dumped_total(directory: Path) -> int:
    """The instruction total of the dump ``callgrind_control --dump`` made: with
    ``--callgrind-out-file=F``, callgrind writes it to ``F.1`` (and the one at exit
    to ``F``)."""
    dump = directory / "callgrind.out.1"
    if not dump.exists():
        raise SystemExit(f"callgrind wrote no dump in {directory}")
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"no total in {dump}")


def has_batch(outboxd: str) -> bool:
    text = subprocess.run([outboxd, "enqueue", "--help"], capture_output=True, text=True).stdout
    return "--batch" in text


FIRST = "dispatcher exec → first delivery"
FIRST_CPU = "  CPU of the dispatcher by then"
FIRST_CPU_WORKER = "  CPU of its store worker by then"
FIRST_CPU_BOTH = "  CPU of both by then"
FIRST_INSTRUCTIONS = "dispatcher exec → first delivery, instructions (callgrind)"
VALGRIND_TIMEOUT = 600.0  # seconds: under callgrind a start is some 50 times slower
FIGURES = ("help", "enqueue", "batch", "first", "instructions")
DEFAULT_FIGURES = {"help", "enqueue", "batch", "first"}


@dataclass
class Figure:
    name: str
    unit: str
    runs: dict[str, list[float]]  # per command measured


def measure(
    commands: Sequence[str], repeat: int, setup: Setup, peer: Peer, only: set[str] | None
) -> list[Figure]:
    def enqueue_one(outboxd: str) -> dict[str, float]:
        setup.fresh_database(outboxd)
        argv = [outboxd, "enqueue", "-c", str(setup.config), "--channel", "hie", "--key", "k1"]
        return {"outboxd enqueue (1 message)": cpu_of([*argv, str(setup.payload)])}

    def enqueue_batch(outboxd: str) -> dict[str, float]:
        setup.fresh_database(outboxd)
        cpu = cpu_of([outboxd, "enqueue", "-c", str(setup.config), "--batch", "-"], setup.batch)
        return {f"outboxd enqueue --batch ({BATCH:,} HL7)": cpu}

    plan: list[tuple[str, str, str, Callable[[str], dict[str, float]]]] = [
        ("help", "outboxd --help", "s CPU", lambda o: {"outboxd --help": cpu_of([o, "--help"])}),
        ("enqueue", "outboxd enqueue (1 message)", "s CPU", enqueue_one),
        ("batch", f"outboxd enqueue --batch ({BATCH:,} HL7)", "s CPU", enqueue_batch),
        ("first", FIRST, "ms", lambda o: first_delivery(o, setup, peer)),
        ("instructions", FIRST_INSTRUCTIONS, "M instructions",
         lambda o: first_delivery_instructions(o, setup, peer)),
    ]  # fmt: skip
    figures = []
    for key, name, unit, how in plan:
        if key not in (only or DEFAULT_FIGURES):
            continue
        if key == "instructions" and not shutil.which("valgrind"):
            raise SystemExit("--only instructions needs valgrind (Debian's package valgrind)")
        usable = [c for c in commands if key != "batch" or has_batch(c)]
        if not usable:
            continue
        log(f"{name}: {repeat} runs of each, in turns")
        how(usable[0])  # a warm-up, not counted (files in the page cache, bytecode written)
        runs: dict[str, dict[str, list[float]]] = {}
        for _ in range(repeat):
            for command in usable:
                for figure, value in how(command).items():
                    runs.setdefault(figure, {}).setdefault(command, []).append(value)
        figures += [Figure(figure, unit, by_command) for figure, by_command in runs.items()]
    return figures


def table(figures: Sequence[Figure], commands: Sequence[str]) -> str:
    lines = [
        "Start-up costs (medians; min to max)",
        "",
        f"  cpus           {os.cpu_count()} (a shared machine: read medians and ratios)",
        f"  load average   {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        *(f"  command {i + 1}      {c}" for i, c in enumerate(commands)),
        "",
    ]
    for figure in figures:
        cells = []
        for i, command in enumerate(commands):
            runs = figure.runs.get(command)
            if not runs:
                cells.append(f"command {i + 1}: (no such command)")
                continue
            fmt = {"ms": "{:.0f}", "M instructions": "{:,.1f}"}.get(figure.unit, "{:.3f}")
            cells.append(
                f"command {i + 1}: {fmt.format(median(runs))} {figure.unit} "
                f"({fmt.format(min(runs))} to {fmt.format(max(runs))})"
            )
        if len(commands) == 2 and all(figure.runs.get(c) for c in commands):
            a, b = (figure.runs[c] for c in commands)
            ratios = [x / y for x, y in zip(a, b, strict=True) if y > 0]
            cells.append(f"ratio 1/2: {median(ratios):.2f} (run by run)")
        lines.append(f"{figure.name}")
        lines += [f"    {cell}" for cell in cells]
    return "\n".join(lines)


def _only(text: str) -> set[str]:
    chosen = set(text.split(","))
    unknown = chosen - set(FIGURES)
    if unknown:
        raise argparse.ArgumentTypeError(f"no such figure: {', '.join(sorted(unknown))}")
    return chosen


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--outboxd", default=str(DEFAULT_OUTBOXD), help="the command measured")
    parser.add_argument("--vs", metavar="PATH", help="a second outboxd, measured in turns")
    parser.add_argument("--repeat", type=int, default=5, help="counted runs (default 5)")
    parser.add_argument(
        "--only",
        type=_only,
        help="comma-separated: help, enqueue, batch, first, instructions (default: all "
        "but instructions)",
    )
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = [args.outboxd] + ([args.vs] if args.vs else [])
    only: set[str] | None = args.only
    peer = Peer()
    setup = Setup(peer.port)
    try:
        figures = measure(commands, args.repeat, setup, peer, only)
    finally:
        setup.remove()
        peer.close()
    if args.json:
        print(json.dumps([f.__dict__ for f in figures], indent=2))
    else:
        print(table(figures, commands))
    return 0


if __name__ == "__main__":
    sys.exit(main())
