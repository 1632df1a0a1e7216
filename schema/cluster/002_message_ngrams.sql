-- The cluster variant of single/002_message_ngrams.sql: the index lives on
-- each node's logs_local; queries through the Distributed `logs` use it.

ALTER TABLE logs_local ON CLUSTER '{cluster}'
    ADD INDEX IF NOT EXISTS message_ngrams lowerUTF8(message)
    TYPE ngrambf_v1(3, 32768, 2, 0) GRANULARITY 1;

ALTER TABLE logs_local ON CLUSTER '{cluster}' MATERIALIZE INDEX message_ngrams;
