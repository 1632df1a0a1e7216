-- The cluster variant of single/006_compact_parts.sql.

ALTER TABLE logs_local ON CLUSTER '{cluster}' MODIFY SETTING min_rows_for_wide_part = 1000000;
