-- Copies every block inserted into events_input into events. `SELECT *` follows columns that
-- `eventd setup` adds later (to events first, then to events_input).
CREATE MATERIALIZED VIEW IF NOT EXISTS $database.events_mv TO $database.events
AS SELECT * FROM $database.events_input
