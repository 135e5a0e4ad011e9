-- v6: finding messages by what they say: the payload's text (an FTS5 trigram index) and the fields an HL7 message is looked up by
-- Frozen: applied once, never edited; a change is a new version.

CREATE VIRTUAL TABLE outboxd_message_text USING fts5(
    payload, content='outboxd_message', content_rowid='id', tokenize='trigram'
);

CREATE TRIGGER outboxd_message_text_insert AFTER INSERT ON outboxd_message
BEGIN
    INSERT INTO outboxd_message_text (rowid, payload) VALUES (NEW.id, NEW.payload);
END;

CREATE TRIGGER outboxd_message_text_delete AFTER DELETE ON outboxd_message
BEGIN
    INSERT INTO outboxd_message_text (outboxd_message_text, rowid, payload)
        VALUES ('delete', OLD.id, OLD.payload);
END;

CREATE TRIGGER outboxd_message_text_update AFTER UPDATE OF payload ON outboxd_message
BEGIN
    INSERT INTO outboxd_message_text (outboxd_message_text, rowid, payload)
        VALUES ('delete', OLD.id, OLD.payload);
    INSERT INTO outboxd_message_text (rowid, payload) VALUES (NEW.id, NEW.payload);
END;

INSERT INTO outboxd_message_text (outboxd_message_text) VALUES ('rebuild');

CREATE TABLE outboxd_message_field (
    name VARCHAR(32) NOT NULL,
    value VARCHAR(255) NOT NULL,
    message_id INTEGER NOT NULL REFERENCES outboxd_message (id) ON DELETE CASCADE,
    PRIMARY KEY (name, value, message_id)
) WITHOUT ROWID;

CREATE INDEX outboxd_message_field_message ON outboxd_message_field (message_id);
