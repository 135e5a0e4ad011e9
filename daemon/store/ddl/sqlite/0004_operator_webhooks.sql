-- v4: listings newest first by channel, status and key prefix; bulk operator actions; partners' signed status callbacks (webhook receipts)
-- Frozen: applied once, never edited; a change is a new version.

DROP INDEX outboxd_message_created;

CREATE INDEX outboxd_message_created ON outboxd_message (created_at, id);

DROP INDEX outboxd_message_channel_status;

CREATE INDEX outboxd_message_channel_status
    ON outboxd_message (channel, status, created_at, id);

CREATE INDEX outboxd_message_channel_created ON outboxd_message (channel, created_at, id);

CREATE TABLE outboxd_operation (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    action VARCHAR(64) NOT NULL,
    filter TEXT NOT NULL,
    actor VARCHAR(128) NOT NULL,
    state VARCHAR(16) NOT NULL,
    matched INTEGER NOT NULL,
    done INTEGER NOT NULL,
    skipped TEXT,
    position INTEGER NOT NULL,
    upto INTEGER NOT NULL,
    result TEXT,
    started_at DATETIME NOT NULL,
    finished_at DATETIME
);

CREATE INDEX outboxd_operation_running ON outboxd_operation (id) WHERE state = 'running';

CREATE TABLE outboxd_webhook_receipt (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    webhook VARCHAR(64) NOT NULL,
    webhook_id VARCHAR(255) NOT NULL,
    received_at DATETIME NOT NULL,
    body TEXT NOT NULL,
    body_size INTEGER NOT NULL,
    partner_status VARCHAR(255),
    result VARCHAR(32) NOT NULL,
    message_id INTEGER REFERENCES outboxd_message (id) ON DELETE SET NULL,
    answer_status INTEGER NOT NULL,
    answer TEXT NOT NULL
);

CREATE UNIQUE INDEX outboxd_webhook_receipt_once ON outboxd_webhook_receipt (webhook, webhook_id);

CREATE INDEX outboxd_webhook_receipt_received ON outboxd_webhook_receipt (received_at);

CREATE INDEX outboxd_webhook_receipt_message ON outboxd_webhook_receipt (message_id)
    WHERE message_id IS NOT NULL;
