-- The cluster variant of single/004_ingest_fraction.sql.

ALTER TABLE logs_ingest ON CLUSTER '{cluster}' ADD COLUMN IF NOT EXISTS ts_fraction String;

DROP VIEW IF EXISTS logs_ingest_mv ON CLUSTER '{cluster}';

CREATE MATERIALIZED VIEW logs_ingest_mv ON CLUSTER '{cluster}' TO logs AS
SELECT
    fromUnixTimestamp64Micro(
        ts + if(ts_fraction = '', 0, toInt64(rightPad(left(ts_fraction, 6), 6, '0'))),
        'UTC'
    ) AS ts,
    fromUnixTimestamp64Micro(received, 'UTC') AS received,
    seq,
    if(app != '', app, if(app_name != '', app_name, 'unknown')) AS app,
    service, container, host, facility, severity,
    app_name, procid, msgid, message, structured_data, labels, source,
    parse_error, invalid_utf8, truncated,
    base64Decode(raw) AS raw
FROM logs_ingest;
