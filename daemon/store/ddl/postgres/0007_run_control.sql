-- v7: a run's cancel asked for by an operator, a schedule's runs counted against max_runs, notifications kept with their text
-- Frozen: applied once, never edited; a change is a new version.

ALTER TABLE outboxd_job_run ADD COLUMN cancel_requested_at TIMESTAMP;

ALTER TABLE outboxd_job_run ADD COLUMN cancel_requested_by VARCHAR(128);

ALTER TABLE outboxd_job_run ADD COLUMN cancel_note TEXT;

ALTER TABLE outboxd_schedule ADD COLUMN runs_made BIGINT NOT NULL DEFAULT 0;

ALTER TABLE outboxd_notification ADD COLUMN title TEXT;

ALTER TABLE outboxd_notification ADD COLUMN text TEXT;
