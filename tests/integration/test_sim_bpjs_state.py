"""The BPJS simulator's state file (``--state``, ``BpjsSimulator(state=...)``): the
bookings outlive a stop, a SIGKILL and a cut-off last line; a file that is not a
journal stops the start and is left alone; a start rewrites the file with one line
per booking and leaves out days long past. Real sockets and processes on 127.0.0.1."""

import asyncio
import json
import os
import re
import signal
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from daemon.bpjs import signing
from daemon.sim.bpjs import BpjsSimulator
from daemon.sim.journal import JournalError
from tests.integration.test_bpjs_channel import CONS_ID, SECRET, USER_KEY, add_body
from tests.support.processes import PROCESS_WAIT

pytestmark = pytest.mark.timeout(60)

WIB = ZoneInfo("Asia/Jakarta")
TODAY = datetime.now(WIB).date()


def at(hour: int, minute: int = 0, day: date = TODAY) -> int:
    """Epoch ms of a local (WIB) time on ``day``."""
    return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=WIB).timestamp() * 1000)


def booking(kodebooking: str, day: date = TODAY, pasienbaru: int = 0) -> dict[str, Any]:
    return add_body(kodebooking, pasienbaru, tanggalperiksa=day.isoformat())


def task(kodebooking: str, taskid: int, waktu: int, **extra: Any) -> dict[str, Any]:
    return {"kodebooking": kodebooking, "taskid": taskid, "waktu": waktu} | extra


def simulator(state: Path, **options: Any) -> BpjsSimulator:
    return BpjsSimulator(CONS_ID, SECRET, USER_KEY, timezone="Asia/Jakarta", state=state, **options)


async def call(base: str, path: str, body: dict[str, Any]) -> tuple[int, str]:
    """A signed POST to ``base + path``; BPJS's metadata code and message."""
    headers = signing.signed_headers(CONS_ID, SECRET, USER_KEY, signing.timestamp_text(time.time()))
    headers["Content-Type"] = "application/json"
    async with (
        aiohttp.ClientSession() as session,
        session.post(base + path, data=json.dumps(body).encode(), headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
        metadata = (await response.json())["metadata"]
    return metadata["code"], metadata["message"]


async def listed(base: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(base + "/_sim/bookings") as r:
        return await r.json()


def lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


async def test_bookings_survive_a_stop_and_a_start(tmp_path):
    state = tmp_path / "var" / "sim-bpjs.journal"  # its directory does not exist yet
    async with simulator(state) as sim:
        assert await call(sim.url(), "/antrean/add", booking("KB-1")) == (200, "Ok")
        assert await call(sim.url(), "/antrean/updatewaktu", task("KB-1", 3, at(9))) == (200, "Ok")
        assert await call(sim.url(), "/antrean/updatewaktu", task("KB-1", 4, at(9, 30))) == (
            200,
            "Ok",
        )
        assert await call(sim.url(), "/antrean/add", booking("KB-2")) == (200, "Ok")
        batal = {"kodebooking": "KB-2", "keterangan": "pasien batal"}
        assert await call(sim.url(), "/antrean/batal", batal) == (200, "Ok")
        before = sim.bookings["KB-1"]

    async with simulator(state) as again:
        base = again.url()
        assert again.bookings["KB-1"] == before  # the add, the times and when they arrived
        assert await call(base, "/antrean/updatewaktu", task("KB-1", 5, at(10))) == (200, "Ok")
        assert await call(base, "/antrean/add", booking("KB-1")) == (
            208,
            "Terdapat duplikasi Kode Booking",
        )
        assert await call(base, "/antrean/batal", batal) == (
            201,
            "Antrean Tidak Ditemukan atau Sudah Dibatalkan",
        )
        assert await call(base, "/antrean/updatewaktu", task("KB-2", 3, at(9))) == (
            201,
            "Antrean sudah dibatalkan",
        )
        assert await listed(base) == [
            {
                "kodebooking": "KB-1",
                "tanggalperiksa": TODAY.isoformat(),
                "pasienbaru": 0,
                "cancelled": None,
                "tasks": [
                    {"taskid": 3, "waktu": at(9)},
                    {"taskid": 4, "waktu": at(9, 30)},
                    {"taskid": 5, "waktu": at(10)},
                ],
            },
            {
                "kodebooking": "KB-2",
                "tanggalperiksa": TODAY.isoformat(),
                "pasienbaru": 0,
                "cancelled": "pasien batal",
                "tasks": [],
            },
        ]


async def test_without_a_state_file_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    async with BpjsSimulator(CONS_ID, SECRET, USER_KEY) as sim:
        assert await call(sim.url(), "/antrean/add", booking("KB-1")) == (200, "Ok")
    assert list(tmp_path.iterdir()) == []


# --- as a process -------------------------------------------------------------------


async def start_process(state: Path) -> tuple[asyncio.subprocess.Process, str]:
    """``python -m daemon.sim.bpjs --state STATE`` on a free port, and its base URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon.sim.bpjs", "--port", "0", "--cons-id", CONS_ID,
        "--timezone", "Asia/Jakarta", "--state", str(state),
        stderr=asyncio.subprocess.PIPE,
        env=os.environ | {"OUTBOXD_SIM_BPJS_SECRET": SECRET, "OUTBOXD_SIM_BPJS_USER_KEY": USER_KEY},
    )  # fmt: skip
    assert process.stderr is not None
    seen = b""
    for _ in range(10):  # "state read" (and any warning) come first
        line = await asyncio.wait_for(process.stderr.readline(), 10)
        seen += line
        if match := re.search(rb"listening .*port=(\d+)", line):
            return process, f"http://127.0.0.1:{int(match[1])}"
    process.kill()
    await process.wait()
    raise AssertionError(seen)


@pytest.mark.timeout(3 * PROCESS_WAIT)  # a process: slow to start on a loaded machine
async def test_the_process_keeps_its_bookings_through_a_sigkill(tmp_path):
    state = tmp_path / "sim-bpjs.journal"
    process, base = await start_process(state)
    try:
        assert await call(base, "/antrean/add", booking("KB-1")) == (200, "Ok")
        assert await call(base, "/antrean/updatewaktu", task("KB-1", 3, at(9))) == (200, "Ok")
        process.kill()
        assert await asyncio.wait_for(process.wait(), PROCESS_WAIT) == -signal.SIGKILL

        process, base = await start_process(state)
        assert [(b["kodebooking"], b["tasks"]) for b in await listed(base)] == [
            ("KB-1", [{"taskid": 3, "waktu": at(9)}])
        ]
        assert await call(base, "/antrean/updatewaktu", task("KB-1", 4, at(9, 5))) == (200, "Ok")
        assert (await call(base, "/antrean/add", booking("KB-1")))[0] == 208
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), PROCESS_WAIT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def a_journal(state: Path) -> bytes:
    """A state file holding two bookings, written by the simulator; its bytes."""
    async with simulator(state) as sim:
        for kodebooking in ("KB-1", "KB-2"):
            assert await call(sim.url(), "/antrean/add", booking(kodebooking)) == (200, "Ok")
        assert await call(sim.url(), "/antrean/updatewaktu", task("KB-1", 3, at(9))) == (200, "Ok")
    return state.read_bytes()


@pytest.mark.timeout(3 * PROCESS_WAIT)  # a process: slow to start on a loaded machine
@pytest.mark.parametrize(
    ("content", "where"),
    [
        (lambda good: b"\x00\x01 this is no journal \xff\n" + good, ":1: not a journal of"),
        (lambda good: b'{"journal": "something else", "version": 1}\n', ":1: not a journal of"),
        (lambda good: good.replace(b"\n", b"\n" + good.split(b"\n")[0] + b"\n", 1), ":2: not a"),
        (
            lambda good: good.replace(b'"kodebooking":"KB-2"', b'"kodebooking":""'),
            ":3: not a booking: kodebooking: must not be empty",
        ),
        (lambda good: good.replace(b"\n", b"\n{]\n", 1), ":2: not a JSON object"),
        (lambda good: good + b"[1, 2]\n", ":5: not a JSON object"),
        (lambda good: good.replace(b'"version":1', b'"version":2'), ":1: journal version 2"),
    ],
    ids=["garbage", "another-kind", "header-twice", "not-a-booking", "bad-middle", "array", "v2"],
)
async def test_a_file_that_is_not_a_journal_stops_the_start_and_is_left_alone(
    tmp_path, content, where
):
    state = tmp_path / "sim-bpjs.journal"
    bad = content(await a_journal(state))
    state.write_bytes(bad)

    with pytest.raises(JournalError, match=re.escape(f"{state}{where}")):
        await simulator(state).start()

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon.sim.bpjs", "--port", "0", "--cons-id", CONS_ID,
        "--state", str(state),
        stderr=asyncio.subprocess.PIPE,
        env=os.environ | {"OUTBOXD_SIM_BPJS_SECRET": SECRET, "OUTBOXD_SIM_BPJS_USER_KEY": USER_KEY},
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), PROCESS_WAIT)
    assert process.returncode == 78
    assert err.decode().startswith(f"sim-bpjs: {state}{where}")
    assert err.count(b"\n") == 1, err
    assert state.read_bytes() == bad
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim-bpjs.journal"]


async def test_a_cut_off_last_line_is_dropped_and_the_rest_kept(tmp_path, caplog):
    state = tmp_path / "sim-bpjs.journal"
    good = await a_journal(state)
    last = good.splitlines()[-1]
    state.write_bytes(good + last[: len(last) // 2])  # a kill during the next write

    async with simulator(state) as sim:
        assert sim.tasks("KB-1") == [(3, at(9))]
        assert list(sim.bookings) == ["KB-1", "KB-2"]
        assert await call(sim.url(), "/antrean/updatewaktu", task("KB-1", 4, at(9, 5))) == (
            200,
            "Ok",
        )
    dropped = [
        r for r in caplog.records if r.getMessage() == "dropped the journal's cut-off last line"
    ]
    assert [(r.levelname, getattr(r, "line", None)) for r in dropped] == [("WARNING", 5)]

    async with simulator(state) as sim:  # what followed the cut-off line reads back
        assert sim.tasks("KB-1") == [(3, at(9)), (4, at(9, 5))]
    assert [line.get("add", {}).get("kodebooking") for line in lines(state)[1:]] == ["KB-1", "KB-2"]


async def test_a_last_line_missing_only_its_newline_is_kept(tmp_path):
    state = tmp_path / "sim-bpjs.journal"
    good = await a_journal(state)
    state.write_bytes(good.removesuffix(b"\n"))
    async with simulator(state) as sim:
        assert sim.tasks("KB-1") == [(3, at(9))]


async def test_an_empty_file_is_an_empty_start(tmp_path):
    state = tmp_path / "sim-bpjs.journal"
    state.touch()
    async with simulator(state) as sim:
        assert sim.bookings == {}
    assert lines(state) == [{"journal": "outboxd sim-bpjs bookings", "version": 1}]


async def test_a_start_rewrites_the_file_with_one_line_per_booking(tmp_path):
    state = tmp_path / "sim-bpjs.journal"
    async with simulator(state) as sim:
        base = sim.url()
        assert await call(base, "/antrean/add", booking("KB-1", pasienbaru=1)) == (200, "Ok")
        for n in range(1, 8):
            extra = {"jenisresep": "Racikan"} if n == 5 else {}
            waktu = at(8, 5 * n)
            assert await call(base, "/antrean/updatewaktu", task("KB-1", n, waktu, **extra)) == (
                200,
                "Ok",
            )
        assert await call(base, "/antrean/add", booking("KB-2")) == (200, "Ok")
        final = sim.bookings["KB-1"]
    journal = lines(state)
    assert len(journal) == 1 + 8 + 1  # the header, 8 changes to KB-1, one to KB-2
    grown = state.stat().st_size

    async with simulator(state) as sim:
        assert sim.bookings["KB-1"] == final
        assert sim.bookings["KB-1"].tasks[4].jenisresep == "Racikan"
    compacted = lines(state)
    assert compacted == [journal[0], journal[8], journal[9]]  # each booking's last state
    assert state.stat().st_size < grown / 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim-bpjs.journal"]  # no temporary

    async with simulator(state) as sim:  # a start without changes leaves it as it is
        assert lines(state) == compacted


async def test_bookings_of_days_long_past_are_left_out(tmp_path):
    state = tmp_path / "sim-bpjs.journal"
    days = {"KB-OLD": date(2024, 3, 1), "KB-WEEK": date(2024, 3, 2), "KB-TODAY": date(2024, 3, 9)}
    async with simulator(state) as sim:
        for kodebooking, day in days.items():
            assert await call(sim.url(), "/antrean/add", booking(kodebooking, day)) == (200, "Ok")

    # 00:30 on 9 March in Jakarta: still 8 March in UTC, where 1 March is 7 days back
    now = datetime(2024, 3, 9, 0, 30, tzinfo=WIB).timestamp()
    async with simulator(state, clock=lambda: now) as sim:
        assert list(sim.bookings) == ["KB-WEEK", "KB-TODAY"]
    assert [line["add"]["kodebooking"] for line in lines(state)[1:]] == ["KB-WEEK", "KB-TODAY"]

    async with simulator(state) as sim:  # today, all of them are long past
        assert sim.bookings == {}
        assert await call(sim.url(), "/antrean/updatewaktu", task("KB-TODAY", 3, at(9))) == (
            201,
            "TaskId=3 belum ada",
        )
