-- The table of applied migrations (made before the first one).

CREATE TABLE IF NOT EXISTS outboxd_schema (
    version INTEGER NOT NULL PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at DATETIME NOT NULL
);
