"""Each operator action once, for the CLI, the API and the page alike: checks of
a message handed in (``enqueue``), schedule steps (``schedules``), partners'
callbacks (``callbacks``), the JSON shapes (``shapes``) and the printed summaries
(``summaries``). May import the store, config and everything below; no role, no face."""
