-- The floor's store (PostgreSQL). Times are Unix milliseconds; the same schema as SQLite's,
-- with BIGINT/BIGSERIAL for the integer columns.

-- Every contract message once: the event id is the bus's Nats-Msg-Id, so a redelivery or a
-- second floor instance never counts it twice.
CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    site        TEXT NOT NULL,
    agent       TEXT NOT NULL,
    call_id     TEXT,
    at_ms       BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    body        TEXT NOT NULL
);

-- One row per call; `key` is `site/agent/call_id`. `ws_agent` is the publishing workstation's
-- subject token (it differs from `agent` when one workstation watches several agents): acks go
-- there.
CREATE TABLE calls (
    key          TEXT PRIMARY KEY,
    site         TEXT NOT NULL,
    agent        TEXT NOT NULL,
    ws_agent     TEXT NOT NULL DEFAULT '',
    agent_name   TEXT NOT NULL DEFAULT '',
    host         TEXT NOT NULL DEFAULT '',
    call_id      TEXT NOT NULL,
    caller       TEXT,
    caller_hash  TEXT,
    caller_key   TEXT,
    started_ms   BIGINT,
    ended_ms     BIGINT,
    level        BIGINT NOT NULL DEFAULT 0,
    marks        BIGINT NOT NULL DEFAULT 0,
    last_ms      BIGINT NOT NULL
);
CREATE INDEX calls_caller ON calls (caller_key, started_ms);
CREATE INDEX calls_open ON calls (ended_ms);

CREATE TABLE marks (
    event_id  TEXT PRIMARY KEY,
    call_key  TEXT NOT NULL,
    at_ms     BIGINT NOT NULL,
    mark      TEXT NOT NULL,
    quote     TEXT NOT NULL DEFAULT '',
    level     BIGINT NOT NULL DEFAULT 0,
    rules     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX marks_call ON marks (call_key, at_ms);

CREATE TABLE warnings (
    event_id  TEXT PRIMARY KEY,
    call_key  TEXT NOT NULL,
    at_ms     BIGINT NOT NULL,
    detail    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX warnings_call ON warnings (call_key, at_ms);

-- One row per escalation id (its events say queued, then delivered or failed).
CREATE TABLE escalations (
    event_id  TEXT PRIMARY KEY,
    call_key  TEXT NOT NULL,
    at_ms     BIGINT NOT NULL,
    reason    TEXT NOT NULL DEFAULT '',
    delivery  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX escalations_call ON escalations (call_key, at_ms);

-- A lead taking a call, by the ack message's id (an instance's own ack and the same ack read
-- back from the stream are one row); the first ack of a call is the one the board shows.
CREATE TABLE acks (
    id        TEXT PRIMARY KEY,
    call_key  TEXT NOT NULL,
    lead      TEXT NOT NULL,
    user_name TEXT NOT NULL,
    at_ms     BIGINT NOT NULL
);
CREATE INDEX acks_call ON acks (call_key, at_ms);

CREATE TABLE workstations (
    key           TEXT PRIMARY KEY,
    site          TEXT NOT NULL,
    agent         TEXT NOT NULL,
    agent_name    TEXT NOT NULL DEFAULT '',
    host          TEXT NOT NULL DEFAULT '',
    last_seen_ms  BIGINT NOT NULL,
    interval_secs BIGINT NOT NULL DEFAULT 30,
    pbx_up        BIGINT NOT NULL DEFAULT 1,
    pbx_down_ms   BIGINT,
    open_calls    BIGINT NOT NULL DEFAULT 0,
    version       TEXT NOT NULL DEFAULT '',
    pinged_ms     BIGINT
);

-- The organisation's conclusion about a caller: every edit is a new version.
CREATE TABLE conclusions (
    caller_key TEXT NOT NULL,
    version    BIGINT NOT NULL,
    text       TEXT NOT NULL,
    phrase     TEXT NOT NULL,
    author     TEXT NOT NULL,
    at_ms      BIGINT NOT NULL,
    PRIMARY KEY (caller_key, version)
);

CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL,
    teams         TEXT NOT NULL DEFAULT '',
    admin         BIGINT NOT NULL DEFAULT 0,
    password_hash TEXT NOT NULL,
    created_ms    BIGINT NOT NULL
);

-- Sessions by the SHA-256 of their cookie token (a stolen database does not log anyone in).
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_name  TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);

-- Append-only: the store offers no update or delete on it.
CREATE TABLE audit (
    id        BIGSERIAL PRIMARY KEY,
    at_ms     BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT ''
);

-- The newest ledger line each workstation published.
CREATE TABLE ledger_heads (
    key             TEXT PRIMARY KEY,
    site            TEXT NOT NULL,
    agent           TEXT NOT NULL,
    host            TEXT NOT NULL DEFAULT '',
    seq             BIGINT NOT NULL,
    manifest_sha256 TEXT NOT NULL DEFAULT '',
    line_hash       TEXT NOT NULL DEFAULT '',
    at_ms           BIGINT NOT NULL
);
