"""Each operator action once, for the CLI, the API and the page alike, as
coroutines on an ``AsyncStore`` (the CLI runs them with ``asyncio.run``): the
requests' models and their checks (``requests``), who acts (``base.Operator``),
messages (``messages``: enqueue, listing, retry, cancel, resend), the pacing of
bulk operations (``bulk``), schedule steps (``schedules``), checks of a message
handed in (``enqueue``), partners' callbacks (``callbacks``), the JSON shapes
(``shapes``) and the printed summaries (``summaries``). A refusal is
``daemon.domain.errors.Refused`` with its kind and the field at fault. May import
the store, config and everything below; no role, no face."""
