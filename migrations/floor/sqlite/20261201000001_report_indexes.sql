-- Reports aggregate calls by start time (a month, a quarter): an index on it keeps a report a
-- range scan instead of a scan of every call ever stored.
CREATE INDEX calls_started ON calls (started_ms);
CREATE INDEX escalations_at ON escalations (at_ms);

-- One row per scheduled report posted (`floor.report.monthly`): several floor instances post
-- each month's report once between them.
CREATE TABLE report_runs (
    slug  TEXT PRIMARY KEY,
    at_ms BIGINT NOT NULL
);
