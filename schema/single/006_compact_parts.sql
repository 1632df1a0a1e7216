-- Parts under a million rows are written Compact: every column in one
-- data file with one marks file, instead of two files or more a column
-- (91 files for a part of `logs` in Wide form). Each insert makes a part
-- of up to 100k lines, and each merge deletes the parts it read, so in
-- Wide form the engine spends much of its insert time creating and
-- removing files; measured here, a quarter of the engine's CPU a line.
-- Merged parts of a million rows and more stay Wide, which serves reads
-- of a few columns over many rows best.

ALTER TABLE logs MODIFY SETTING min_rows_for_wide_part = 1000000;
