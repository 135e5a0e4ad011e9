"""Values every layer shares: messages and outcomes, filters, views, statuses,
errors, the clock, units, settings field types and their bounds. Imports nothing
of outboxd (the standard library and pydantic only)."""
