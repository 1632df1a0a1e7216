-- The log table, the ingest table logd writes to, and the view between them.
-- logd sends each batch to logs_ingest in JSONColumns (times as integer
-- microseconds, raw frames as base64); the view turns columns into their
-- stored types in bulk, inside the engine, so no Python works per row.

CREATE TABLE IF NOT EXISTS logs
(
    ts DateTime64(6, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    received DateTime64(6, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    seq UInt64 CODEC(Delta, ZSTD(1)),
    app LowCardinality(String),
    service LowCardinality(String),
    container LowCardinality(String),
    host LowCardinality(String),
    facility UInt8,
    severity UInt8,
    app_name LowCardinality(String),
    procid LowCardinality(String),
    msgid LowCardinality(String),
    message String CODEC(ZSTD(1)),
    structured_data String CODEC(ZSTD(1)),
    labels Map(LowCardinality(String), String),
    source LowCardinality(String),
    parse_error LowCardinality(String),
    invalid_utf8 Bool,
    truncated Bool,
    raw String CODEC(ZSTD(1)),
    INDEX message_tokens message TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 1,
    INDEX seq_range seq TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (app, ts, seq);

CREATE TABLE IF NOT EXISTS logs_ingest
(
    ts Int64,
    received Int64,
    seq UInt64,
    app String,
    service String,
    container String,
    host String,
    facility UInt8,
    severity UInt8,
    app_name String,
    procid String,
    msgid String,
    message String,
    structured_data String,
    labels Map(String, String),
    source String,
    parse_error String,
    invalid_utf8 Bool,
    truncated Bool,
    raw String
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS logs_ingest_mv TO logs AS
SELECT
    fromUnixTimestamp64Micro(ts, 'UTC') AS ts,
    fromUnixTimestamp64Micro(received, 'UTC') AS received,
    seq, app, service, container, host, facility, severity,
    app_name, procid, msgid, message, structured_data, labels, source,
    parse_error, invalid_utf8, truncated,
    base64Decode(raw) AS raw
FROM logs_ingest;
