-- v2: visits per source and booking code; messages linked to their visit
-- Frozen: applied once, never edited; a change is a new version.

ALTER TABLE outboxd_visit DROP CONSTRAINT outboxd_visit_kodebooking_key;

CREATE UNIQUE INDEX outboxd_visit_source_kodebooking ON outboxd_visit (source, kodebooking);

CREATE INDEX outboxd_visit_kodebooking ON outboxd_visit (kodebooking);

ALTER TABLE outboxd_message ADD COLUMN visit_id BIGINT
    REFERENCES outboxd_visit (id) ON DELETE SET NULL;

ALTER TABLE outboxd_message ADD COLUMN predecessors_resent_at TIMESTAMP;

CREATE INDEX outboxd_message_visit ON outboxd_message (visit_id) WHERE visit_id IS NOT NULL;

UPDATE outboxd_message SET visit_id = (
    SELECT v.id FROM outboxd_visit v WHERE v.kodebooking = outboxd_message.group_key
) WHERE group_key IS NOT NULL AND substr(kind, 1, 5) = 'bpjs.';
