"""The traffic the soak offers through the control API: batches of 500 on ``POST
/api/v1/messages`` at a steady rate, two in three HL7 ADT^A04s for the HIE (MLLP), one
in three JSON documents for the webhook partner (HTTP). A batch the API does not take
(an error, a timeout) is sent again until it is: nothing is lost, and a duplicate key
is a no-op."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import aiohttp

BATCH = 500  # the API's largest batch
RETRY_PAUSE = 1.0


def hl7(number: int) -> str:
    control = f"SOAK{number:09d}"
    stamp = "20261123080000"
    return (
        "\r".join(
            (
                f"MSH|^~\\&|OUTBOXD-SOAK|CLINIC|HIE|HIE|{stamp}||ADT^A04^ADT_A01|{control}|P|2.5.1",
                f"EVN|A04|{stamp}",
                f"PID|1||MRN{number % 200_000}^^^CLINIC^MR||Santoso^Budi||19800101|M",
                "PV1|1|O|POLI-UMUM^^^CLINIC",
            )
        )
        + "\r"
    )


def message(number: int) -> dict[str, object]:
    if number % 3 == 2:
        payload = {"event": "assessment", "number": number, "patient": f"MRN{number % 200_000}"}
        return {"channel": "webhook", "key": f"w{number}", "payload": payload}
    return {"channel": "hie", "key": f"SOAK{number:09d}", "payload": hl7(number)}


@dataclass
class Offer:
    """Where the load stands; read by the sampler while it runs."""

    total: int
    rate: float  # messages a second
    accepted: int = 0
    refused_batches: int = 0
    errors: list[str] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    @property
    def seconds(self) -> float:
        return self.total / self.rate


async def post_batch(session: aiohttp.ClientSession, url: str, batch: list[dict[str, object]]):
    """Until the API takes it: 200 (all known) or 201 (some new)."""
    body = json.dumps({"messages": batch})
    headers = {"Content-Type": "application/json"}
    while True:
        try:
            async with session.post(url, data=body, headers=headers) as response:
                text = await response.text()
                if response.status in (200, 201):
                    return
                why = f"HTTP {response.status}: {text[:200]}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            why = f"{type(exc).__name__}: {exc}"
        yield why
        await asyncio.sleep(RETRY_PAUSE)


async def run(offer: Offer, control_url: str, stop: asyncio.Event) -> None:
    """Offer ``offer.total`` messages at ``offer.rate``, a batch when it is due."""
    url = f"{control_url}/api/v1/messages"
    timeout = aiohttp.ClientTimeout(total=60)
    offer.started = time.monotonic()
    async with aiohttp.ClientSession(timeout=timeout) as session:
        sent = 0
        while sent < offer.total and not stop.is_set():
            due = offer.started + sent / offer.rate
            wait = due - time.monotonic()
            if wait > 0:
                try:
                    await asyncio.wait_for(stop.wait(), wait)
                    break
                except TimeoutError:
                    pass
            count = min(BATCH, offer.total - sent)
            batch = [message(n) for n in range(sent, sent + count)]
            async for why in post_batch(session, url, batch):
                offer.refused_batches += 1
                if len(offer.errors) < 20:
                    offer.errors.append(why)
                if stop.is_set():
                    return
            sent += count
            offer.accepted = sent
    offer.finished = time.monotonic()
