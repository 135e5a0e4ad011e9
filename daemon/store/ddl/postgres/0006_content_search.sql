-- v6: finding messages by what they say: the payload's text (a pg_trgm index) and the fields an HL7 message is looked up by
-- Frozen: applied once, never edited; a change is a new version.

-- The payload's bytes as text, one character per byte (Latin-1), so that any
-- payload reads, UTF-8 or not; a search's text is turned the same way. Text
-- holds no NUL: a payload is read up to its first (as SQLite's FTS5 reads it).
CREATE FUNCTION outboxd_payload_text(payload bytea) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
    SELECT convert_from(
        CASE WHEN position('\x00'::bytea IN payload) > 0
             THEN substring(payload FROM 1 FOR position('\x00'::bytea IN payload) - 1)
             ELSE payload END,
        'LATIN1')
$$;

-- Each payload's text in a table of its own, written once when the message is
-- stored and never updated: a message's status changes (new row versions of
-- outboxd_message) touch no trigram index, so delivery pays nothing for search.
CREATE TABLE outboxd_message_text (
    message_id BIGINT PRIMARY KEY REFERENCES outboxd_message (id) ON DELETE CASCADE,
    body TEXT NOT NULL
);

INSERT INTO outboxd_message_text (message_id, body)
    SELECT id, outboxd_payload_text(payload) FROM outboxd_message;

CREATE FUNCTION outboxd_message_text_insert() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outboxd_message_text (message_id, body)
        SELECT id, outboxd_payload_text(payload) FROM new_messages;
    RETURN NULL;
END
$$;

CREATE TRIGGER outboxd_message_text_insert AFTER INSERT ON outboxd_message
    REFERENCING NEW TABLE AS new_messages
    FOR EACH STATEMENT EXECUTE FUNCTION outboxd_message_text_insert();

-- pg_trgm where the database has it already (in any schema), else in public: a
-- schema of outboxd's own would take the extension with it were it dropped.
DO $$
DECLARE
    home text;
BEGIN
    SELECT n.nspname INTO home FROM pg_extension e
        JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm';
    IF home IS NULL THEN
        CREATE EXTENSION pg_trgm SCHEMA public;
        home := 'public';
    END IF;
    EXECUTE 'CREATE INDEX outboxd_message_text_trigrams ON outboxd_message_text '
        'USING gin (body ' || quote_ident(home) || '.gin_trgm_ops)';
END
$$;

CREATE TABLE outboxd_message_field (
    name VARCHAR(32) NOT NULL,
    value VARCHAR(255) NOT NULL,
    message_id BIGINT NOT NULL REFERENCES outboxd_message (id) ON DELETE CASCADE,
    PRIMARY KEY (name, value, message_id)
);

CREATE INDEX outboxd_message_field_message ON outboxd_message_field (message_id);
