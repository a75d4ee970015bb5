-- Evidence at hand: the floor's check of each call folder the workstations archived. A ledger
-- event names the folder; the row is made when the floor first sees it and holds the verify
-- state until a final answer (next_ms NULL). A call split by a restart has one row per folder.
CREATE TABLE evidence (
    call_key        TEXT NOT NULL,
    dir             TEXT NOT NULL,
    site            TEXT NOT NULL,
    agent           TEXT NOT NULL,
    host            TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    line_sha256     TEXT NOT NULL DEFAULT '',
    -- waiting | verified | altered | signature | missing | no_key | error
    state           TEXT NOT NULL,
    detail          TEXT NOT NULL DEFAULT '',
    -- The signed manifest as archived (for the page's facts), once it could be read.
    manifest        TEXT NOT NULL DEFAULT '',
    -- The key the ledger event carried (base64), and which key the check used:
    -- `file:<path>` (floor.evidence_keys) or `pinned:<first seen, Unix ms>`.
    published_key   TEXT NOT NULL DEFAULT '',
    key_source      TEXT NOT NULL DEFAULT '',
    attempts        BIGINT NOT NULL DEFAULT 0,
    checked_ms      BIGINT NOT NULL DEFAULT 0,
    next_ms         BIGINT,
    PRIMARY KEY (call_key, dir)
);
CREATE INDEX evidence_due ON evidence (next_ms);

-- For a host without a key file: the first evidence key it published on the bus, and the
-- workstation (its subject token: its NATS credentials only let it publish as itself) that
-- published it. Never replaced: a later, different key for the host, or the host's folders
-- published from another workstation, are verify failures.
CREATE TABLE evidence_host_keys (
    host          TEXT PRIMARY KEY,
    public_key    TEXT NOT NULL,
    ws_agent      TEXT NOT NULL DEFAULT '',
    first_seen_ms BIGINT NOT NULL
);

-- Ledger events already turned into evidence rows (addenda and repeats included).
CREATE TABLE evidence_seen (
    event_id TEXT PRIMARY KEY
);

-- Finding the ledger events not seen yet without reading every event.
CREATE INDEX events_ledger ON events (at_ms) WHERE kind = 'ledger';

-- Ledger events stored before this version are not checked: that would download the whole
-- archive at the first start after an upgrade. `callguard verify s3://…` checks them.
INSERT INTO evidence_seen (event_id) SELECT id FROM events WHERE kind = 'ledger';
