-- v5: counts per channel and status, and per minute of what became sent or failed, kept by triggers
-- Frozen: applied once, never edited; a change is a new version.

CREATE TABLE outboxd_tally (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    channel VARCHAR(64) NOT NULL,
    status VARCHAR(16) NOT NULL,
    n INTEGER NOT NULL
);

CREATE TABLE outboxd_minute_tally (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    channel VARCHAR(64) NOT NULL,
    minute DATETIME NOT NULL,
    status VARCHAR(16) NOT NULL,
    n INTEGER NOT NULL
);

CREATE UNIQUE INDEX outboxd_tally_key ON outboxd_tally (channel, status);

CREATE UNIQUE INDEX outboxd_minute_tally_key ON outboxd_minute_tally (minute, channel, status);

CREATE TRIGGER outboxd_tally_insert AFTER INSERT ON outboxd_message
BEGIN
    INSERT INTO outboxd_tally (channel, status, n) VALUES (NEW.channel, NEW.status, 1)
        ON CONFLICT (channel, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER outboxd_tally_update AFTER UPDATE OF status, channel ON outboxd_message
WHEN OLD.status <> NEW.status OR OLD.channel <> NEW.channel
BEGIN
    UPDATE outboxd_tally SET n = n - 1 WHERE channel = OLD.channel AND status = OLD.status;
    INSERT INTO outboxd_tally (channel, status, n) VALUES (NEW.channel, NEW.status, 1)
        ON CONFLICT (channel, status) DO UPDATE SET n = n + 1;
    INSERT INTO outboxd_minute_tally (channel, minute, status, n)
        SELECT NEW.channel, substr(NEW.updated_at, 1, 16) || ':00.000000', NEW.status, 1
        WHERE NEW.status IN ('sent', 'failed')
        ON CONFLICT (minute, channel, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER outboxd_tally_delete AFTER DELETE ON outboxd_message
BEGIN
    UPDATE outboxd_tally SET n = n - 1 WHERE channel = OLD.channel AND status = OLD.status;
END;

INSERT INTO outboxd_tally (channel, status, n)
    SELECT channel, status, COUNT(*) FROM outboxd_message GROUP BY channel, status;

INSERT INTO outboxd_minute_tally (channel, minute, status, n)
    SELECT m.channel, substr(e.at, 1, 16) || ':00.000000', e.to_status, COUNT(*)
    FROM outboxd_status_event e JOIN outboxd_message m ON m.id = e.message_id
    WHERE e.to_status IN ('sent', 'failed') AND e.at >= :week_ago
    GROUP BY 1, 2, 3;
