-- Every failed attempt of a step, oldest first, as a JSON array (type, message, bounded
-- traceback, times, classification and retry decision; ADR 62). NULL when the step
-- never failed, which is what rows written before this migration read as.
ALTER TABLE steps ADD COLUMN attempt_errors TEXT;
