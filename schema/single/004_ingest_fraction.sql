-- Bulk-parsed chunks (logd/bulk.py) send a line's time to the second in
-- `ts` and the digits of its fraction, as sent, in `ts_fraction`; the view
-- adds them here, in bulk. They also leave out the columns a chunk has no
-- value for (JSONColumns fills defaults), so `app` falls back to APP-NAME
-- here as logd.batch does for parsed lines ("unknown" when both are empty).
-- The view is replaced, not altered: an insert that arrives between the
-- two statements would be lost, and logd applies migrations before it
-- inserts.

ALTER TABLE logs_ingest ADD COLUMN IF NOT EXISTS ts_fraction String;

DROP VIEW IF EXISTS logs_ingest_mv;

CREATE MATERIALIZED VIEW logs_ingest_mv TO logs AS
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
