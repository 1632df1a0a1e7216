-- The cluster variant of single/003_drop_message_tokens.sql.

ALTER TABLE logs_local ON CLUSTER '{cluster}' DROP INDEX IF EXISTS message_tokens;
