-- v1: messages, status events, rate buckets, visits, poll cursors, schedules, job runs
-- Frozen: applied once, never edited; a change is a new version.

CREATE TABLE outboxd_message (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    channel VARCHAR(64) NOT NULL,
    kind VARCHAR(64) NOT NULL,
    "key" VARCHAR(255) NOT NULL,
    payload BLOB NOT NULL,
    status VARCHAR(16) NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DATETIME NOT NULL,
    lease_owner VARCHAR(128),
    lease_expires_at DATETIME,
    last_error TEXT,
    response TEXT,
    after_id INTEGER REFERENCES outboxd_message (id) ON DELETE SET NULL,
    group_key VARCHAR(255),
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    sent_at DATETIME
);

CREATE UNIQUE INDEX outboxd_message_channel_key ON outboxd_message (channel, "key");

CREATE INDEX outboxd_message_due ON outboxd_message (channel, next_attempt_at, id)
    WHERE status = 'pending';

CREATE INDEX outboxd_message_leased ON outboxd_message (lease_expires_at)
    WHERE status = 'sending';

CREATE INDEX outboxd_message_channel_status ON outboxd_message (channel, status, id);

CREATE INDEX outboxd_message_after ON outboxd_message (after_id) WHERE after_id IS NOT NULL;

CREATE INDEX outboxd_message_created ON outboxd_message (created_at);

CREATE INDEX outboxd_message_group ON outboxd_message (channel, group_key, id)
    WHERE group_key IS NOT NULL;

CREATE TABLE outboxd_rate_bucket (
    channel VARCHAR(64) NOT NULL PRIMARY KEY,
    tokens REAL NOT NULL,
    updated_at DATETIME NOT NULL
);

CREATE TABLE outboxd_status_event (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL REFERENCES outboxd_message (id) ON DELETE CASCADE,
    from_status VARCHAR(16),
    to_status VARCHAR(16) NOT NULL,
    actor VARCHAR(128) NOT NULL,
    details TEXT,
    at DATETIME NOT NULL
);

CREATE INDEX outboxd_status_event_message ON outboxd_status_event (message_id, id);

CREATE INDEX outboxd_status_event_at ON outboxd_status_event (at);

CREATE TABLE outboxd_visit (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    kodebooking VARCHAR(64) NOT NULL UNIQUE,
    source VARCHAR(64) NOT NULL,
    task_progress TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
);

CREATE TABLE outboxd_poll_cursor (
    source VARCHAR(64) NOT NULL PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at DATETIME NOT NULL
);

CREATE TABLE outboxd_schedule (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    name VARCHAR(64) NOT NULL UNIQUE,
    cron VARCHAR(128) NOT NULL,
    timezone VARCHAR(64) NOT NULL,
    job VARCHAR(64) NOT NULL,
    options TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
);

CREATE TABLE outboxd_job_run (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    schedule_id INTEGER NOT NULL REFERENCES outboxd_schedule (id) ON DELETE CASCADE,
    "trigger" VARCHAR(16) NOT NULL,
    fire_time DATETIME NOT NULL,
    status VARCHAR(16) NOT NULL,
    started_at DATETIME NOT NULL,
    finished_at DATETIME,
    error TEXT,
    output TEXT
);

CREATE UNIQUE INDEX outboxd_job_run_fire ON outboxd_job_run (schedule_id, fire_time);
