-- v3: the scheduler's fire ledger and schedules, alert states, notifications, breaker states, remote status checks, the audit of operator actions
-- Frozen: applied once, never edited; a change is a new version.

DROP TABLE outboxd_job_run;

DROP TABLE outboxd_schedule;

CREATE TABLE outboxd_schedule (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    name VARCHAR(64) NOT NULL UNIQUE,
    definition TEXT NOT NULL,
    origin VARCHAR(16) NOT NULL,
    revision INTEGER NOT NULL,
    paused INTEGER NOT NULL,
    pause_note TEXT,
    paused_by VARCHAR(128),
    paused_at DATETIME,
    removed_at DATETIME,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
);

CREATE TABLE outboxd_job_run (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    schedule_id INTEGER NOT NULL REFERENCES outboxd_schedule (id) ON DELETE CASCADE,
    fire_time DATETIME NOT NULL,
    attempt INTEGER NOT NULL,
    "trigger" VARCHAR(16) NOT NULL,
    status VARCHAR(16) NOT NULL,
    retry_of INTEGER,
    due_at DATETIME NOT NULL,
    started_at DATETIME,
    finished_at DATETIME,
    lease_owner VARCHAR(128),
    lease_expires_at DATETIME,
    error TEXT,
    output TEXT,
    note TEXT,
    created_at DATETIME NOT NULL
);

CREATE UNIQUE INDEX outboxd_job_run_fire ON outboxd_job_run (schedule_id, fire_time, attempt);

CREATE INDEX outboxd_job_run_queued ON outboxd_job_run (due_at) WHERE status = 'queued';

CREATE INDEX outboxd_job_run_running ON outboxd_job_run (lease_expires_at)
    WHERE status = 'running';

CREATE INDEX outboxd_job_run_ledger ON outboxd_job_run (schedule_id, id);

CREATE INDEX outboxd_job_run_finished ON outboxd_job_run (finished_at);

CREATE TABLE outboxd_alert (
    rule VARCHAR(128) NOT NULL,
    subject VARCHAR(255) NOT NULL,
    state VARCHAR(16) NOT NULL,
    since DATETIME NOT NULL,
    notified_at DATETIME,
    details TEXT,
    PRIMARY KEY (rule, subject)
);

CREATE TABLE outboxd_notification (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    rule VARCHAR(128) NOT NULL,
    subject VARCHAR(255) NOT NULL,
    event VARCHAR(16) NOT NULL,
    target VARCHAR(64) NOT NULL,
    ok INTEGER NOT NULL,
    answer TEXT,
    at DATETIME NOT NULL
);

CREATE INDEX outboxd_notification_at ON outboxd_notification (at);

CREATE TABLE outboxd_breaker (
    channel VARCHAR(64) NOT NULL,
    owner VARCHAR(128) NOT NULL,
    state VARCHAR(16) NOT NULL,
    since DATETIME NOT NULL,
    detail TEXT,
    updated_at DATETIME NOT NULL,
    PRIMARY KEY (channel, owner)
);

CREATE TABLE outboxd_status_check (
    message_id INTEGER NOT NULL PRIMARY KEY REFERENCES outboxd_message (id) ON DELETE CASCADE,
    checks INTEGER NOT NULL,
    checked_at DATETIME NOT NULL,
    answer TEXT,
    flagged INTEGER NOT NULL
);

CREATE INDEX outboxd_message_sent ON outboxd_message (channel, sent_at) WHERE status = 'sent';

CREATE TABLE outboxd_audit (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    actor VARCHAR(128) NOT NULL,
    action VARCHAR(64) NOT NULL,
    target TEXT,
    details TEXT,
    changed INTEGER NOT NULL,
    at DATETIME NOT NULL
);

CREATE INDEX outboxd_audit_at ON outboxd_audit (at);
