-- v2: visits per source and booking code; messages linked to their visit
-- Frozen: applied once, never edited; a change is a new version.

CREATE TABLE outboxd_visit_v2 (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    kodebooking VARCHAR(64) NOT NULL,
    source VARCHAR(64) NOT NULL,
    task_progress TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
);

INSERT INTO outboxd_visit_v2 (id, kodebooking, source, task_progress, created_at, updated_at)
    SELECT id, kodebooking, source, task_progress, created_at, updated_at FROM outboxd_visit;

DROP TABLE outboxd_visit;

ALTER TABLE outboxd_visit_v2 RENAME TO outboxd_visit;

CREATE UNIQUE INDEX outboxd_visit_source_kodebooking ON outboxd_visit (source, kodebooking);

CREATE INDEX outboxd_visit_kodebooking ON outboxd_visit (kodebooking);

ALTER TABLE outboxd_message ADD COLUMN visit_id INTEGER
    REFERENCES outboxd_visit (id) ON DELETE SET NULL;

ALTER TABLE outboxd_message ADD COLUMN predecessors_resent_at DATETIME;

CREATE INDEX outboxd_message_visit ON outboxd_message (visit_id) WHERE visit_id IS NOT NULL;

UPDATE outboxd_message SET visit_id = (
    SELECT v.id FROM outboxd_visit v WHERE v.kodebooking = outboxd_message.group_key
) WHERE group_key IS NOT NULL AND substr(kind, 1, 5) = 'bpjs.';
