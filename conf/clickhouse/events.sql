-- $database.events: every event, one row each. Kept by events_mv from events_input.
-- Partitioned by month of the event time; sorted by clickhouse_loader.order_by.
-- replicated_deduplication_window: how many recent blocks' hashes are kept (in ZooKeeper) to
-- drop a retried INSERT; the loader inserts one block per Kafka partition per batch, so the
-- default of 100 would pass within seconds.
-- Columns: the envelope (id; type; time: event time, seconds; time_ms: the same in
-- milliseconds; received_ms: when eventd accepted it; host; input; schema_version), then
-- clickhouse_loader.columns (money: *_micros, integer micro-units, 1 = 0.000001), then
-- extra_keys/extra_values (every other field, as text; money in units), then the source
-- position kafka_topic/kafka_partition/kafka_offset. No column comments: 18.16 refuses a
-- Replicated table that has them ("structure in ZooKeeper is too different").
CREATE TABLE IF NOT EXISTS $database.events
(
$columns
)
ENGINE = ReplicatedMergeTree('$zookeeper_path/$database/events', '$replica')
PARTITION BY toYYYYMM(time)
ORDER BY ($order_by)
SETTINGS index_granularity = 8192, replicated_deduplication_window = $replicated_deduplication_window
