"""Alert rules: when to notify, judged from facts read at one moment (pure).

| ``when``          | holds for a subject when …                                      |
|-------------------|-----------------------------------------------------------------|
| ``run_failed``    | a schedule's latest run failed or was interrupted, retries done  |
| ``fire_missed``   | a schedule's fires were missed in the last ``window``            |
| ``no_success``    | a schedule has not succeeded for ``over``                        |
| ``messages_failed`` | messages of a channel ended ``failed`` in the last ``window``  |
| ``breaker_open``  | a channel's circuit breaker has been open for ``over``           |
| ``queue_age``     | a channel's oldest pending message is older than ``over``        |

While a condition holds it is notified once per ``window``; when it clears,
once more ("resolved"), saying what cleared it (``resolution``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field, model_validator

from daemon.domain.alerts import AlertInputs
from daemon.domain.fields import Line, Model, PositiveDuration
from daemon.domain.units import format_duration

When = Literal[
    "run_failed", "fire_missed", "no_success", "messages_failed", "breaker_open", "queue_age"
]
SCHEDULE_RULES = ("run_failed", "fire_missed", "no_success")
CHANNEL_RULES = ("messages_failed", "breaker_open", "queue_age")


class AlertSettings(Model):
    when: When
    schedule: Line | None = None  # of one schedule (default: every one)
    channel: Line | None = None  # of one channel (default: every one)
    over: PositiveDuration | None = None
    notify: Annotated[list[Line], Field(min_length=1)]
    window: PositiveDuration = 3600.0
    name: Line | None = None  # the rule's name in the notifications (default: when[:subject])

    @model_validator(mode="after")
    def _fits(self) -> AlertSettings:
        if self.when in ("no_success", "queue_age") and self.over is None:
            raise ValueError(f"{self.when} needs over (how long is too long)")
        if self.schedule is not None and self.when not in SCHEDULE_RULES:
            raise ValueError(f"schedule is for {', '.join(SCHEDULE_RULES)}")
        if self.channel is not None and self.when not in CHANNEL_RULES:
            raise ValueError(f"channel is for {', '.join(CHANNEL_RULES)}")
        return self

    @property
    def rule(self) -> str:
        return self.name or ":".join(p for p in (self.when, self.schedule or self.channel) if p)


def _age(now: datetime, then: datetime) -> str:
    return format_duration(max(0.0, (now - then).total_seconds()))


def evaluate(rule: AlertSettings, facts: AlertInputs) -> dict[str, str]:
    """The subjects for which the rule holds, each with a line saying why."""
    now = facts.now
    over = rule.over or 0.0
    out: dict[str, str] = {}
    if rule.when in SCHEDULE_RULES:
        names = set(facts.schedule_since)
        if rule.schedule is not None:
            names &= {rule.schedule}
        for name in sorted(names):
            if rule.when == "run_failed":
                outcome = facts.last_outcomes.get(name)
                if outcome is not None and outcome[0] != "succeeded" and not outcome[2]:
                    out[name] = f"the last run of {name} {outcome[0]}: {outcome[1] or '(no error)'}"
            elif rule.when == "fire_missed":
                missed = facts.missed.get(name, 0)
                if missed:
                    out[name] = (
                        f"{missed} fire(s) of {name} missed in the last "
                        f"{format_duration(rule.window)}"
                    )
            else:
                last = facts.last_success.get(name)
                since = last or facts.schedule_since[name]
                if now - since > timedelta(seconds=over):
                    said = (
                        f"for {_age(now, since)}"
                        if last
                        else f"since it began ({_age(now, since)})"
                    )
                    out[name] = f"{name} has not succeeded {said}"
        return out
    channels = set(facts.failed_messages) | set(facts.oldest_pending) | set(facts.breakers_open)
    if rule.channel is not None:
        channels &= {rule.channel}
    for channel in sorted(channels):
        if rule.when == "messages_failed":
            count = facts.failed_messages.get(channel, 0)
            if count:
                out[channel] = (
                    f"{count} message(s) of {channel} failed in the last "
                    f"{format_duration(rule.window)}"
                )
        elif rule.when == "breaker_open":
            opened = facts.breakers_open.get(channel)
            if opened is not None and now - opened > timedelta(seconds=over):
                out[channel] = (
                    f"the circuit breaker of {channel} has been open for {_age(now, opened)}"
                )
        else:
            oldest = facts.oldest_pending.get(channel)
            if oldest is not None and now - oldest > timedelta(seconds=over):
                out[channel] = f"the oldest pending message of {channel} is {_age(now, oldest)} old"
    return out


def resolution(rule: AlertSettings, subject: str, facts: AlertInputs) -> str:
    """What made a condition that held for ``subject`` clear, read from the facts
    it was judged on when it cleared."""
    now = facts.now
    window = format_duration(rule.window)
    if rule.when in SCHEDULE_RULES and subject not in facts.schedule_since:
        return f"{subject} was removed"
    if rule.when == "run_failed":
        outcome = facts.last_outcomes.get(subject)
        fire = facts.last_fire.get(subject)
        at = f" (the fire of {fire.isoformat(timespec='seconds')})" if fire else ""
        if outcome is not None and outcome[0] == "succeeded":
            return f"the latest run of {subject} succeeded{at}"
        return f"no failed run of {subject} is the latest any more"
    if rule.when == "fire_missed":
        return f"no fire of {subject} was missed in the last {window}"
    if rule.when == "no_success":
        last = facts.last_success.get(subject)
        if last is not None:
            return f"{subject} succeeded at {last.isoformat(timespec='seconds')}"
        return f"{subject} was changed: its time without success counts from then"
    if rule.when == "messages_failed":
        return f"no message of {subject} failed in the last {window}"
    if rule.when == "breaker_open":
        opened = facts.breakers_open.get(subject)
        if opened is None:
            return f"the circuit breaker of {subject} is no longer open"
        return f"the circuit breaker of {subject} opened again {_age(now, opened)} ago"
    oldest = facts.oldest_pending.get(subject)
    if oldest is None:
        return f"no message of {subject} is pending"
    return f"the oldest pending message of {subject} is {_age(now, oldest)} old"
