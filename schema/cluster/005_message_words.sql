-- The cluster variant of single/005_message_words.sql.

ALTER TABLE logs_local ON CLUSTER '{cluster}' DROP INDEX IF EXISTS message_ngrams;

ALTER TABLE logs_local ON CLUSTER '{cluster}'
    ADD INDEX IF NOT EXISTS message_words lowerUTF8(message)
    TYPE tokenbf_v1(32768, 1, 0) GRANULARITY 1;

ALTER TABLE logs_local ON CLUSTER '{cluster}' MATERIALIZE INDEX message_words;
