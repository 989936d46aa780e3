-- $database.events_input: what the ClickHouse loader INSERTs into. Engine Null: it keeps nothing;
-- its two materialized views (events_mv, stats_hourly_mv) write every inserted block into
-- events and stats_hourly.
--
-- Why a Null table in front: ClickHouse turns block deduplication OFF for the views of a
-- Replicated table, and skips the views entirely when the source block was a duplicate
-- (seen on 18.16; current releases do the same by default). Inserting straight into the
-- Replicated events table would then lose the statistics of a block whose INSERT failed
-- between writing events and writing stats_hourly: the retry is dropped by events, and the
-- views never see it. Behind a Null table each target checks its OWN block hash, so a retried
-- block is dropped where it already is and written where it is missing.
--
-- Placeholders ($$database, $$columns, ...) are filled by `eventd setup` from clickhouse_loader in eventd.yaml.
CREATE TABLE IF NOT EXISTS $database.events_input
(
$columns
)
ENGINE = Null
