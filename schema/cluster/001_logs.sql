-- The cluster variant of single/001_logs.sql, for more than one machine.
-- logd applies it with --cluster NAME; {cluster} becomes NAME, while {shard}
-- and {replica} are the server's own macros. Each node keeps its part of the
-- lines in logs_local (replicated); logs is a Distributed table over them,
-- sharded by app so one app's lines stay on one shard. logd reads `logs`
-- and inserts into `logs_ingest` exactly as on one node.

CREATE TABLE IF NOT EXISTS logs_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/logd/logs_local', '{replica}')
PARTITION BY toDate(ts)
ORDER BY (app, ts, seq);

CREATE TABLE IF NOT EXISTS logs ON CLUSTER '{cluster}' AS logs_local
ENGINE = Distributed('{cluster}', currentDatabase(), logs_local, cityHash64(app));

CREATE TABLE IF NOT EXISTS logs_ingest ON CLUSTER '{cluster}'
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

CREATE MATERIALIZED VIEW IF NOT EXISTS logs_ingest_mv ON CLUSTER '{cluster}' TO logs AS
SELECT
    fromUnixTimestamp64Micro(ts, 'UTC') AS ts,
    fromUnixTimestamp64Micro(received, 'UTC') AS received,
    seq, app, service, container, host, facility, severity,
    app_name, procid, msgid, message, structured_data, labels, source,
    parse_error, invalid_utf8, truncated,
    base64Decode(raw) AS raw
FROM logs_ingest;
