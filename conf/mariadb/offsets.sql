-- eventd's progress: the next Kafka offset to apply, per topic partition. Updated in the same
-- transaction as the balances it covers, and only if it still holds the value the writer started from.
CREATE TABLE IF NOT EXISTS {offsets} (
  topic VARCHAR(249) NOT NULL,
  part INT NOT NULL,
  next_offset BIGINT NOT NULL,
  updated_at DATETIME(6) NOT NULL COMMENT 'UTC',
  updated_by VARCHAR(255) NOT NULL COMMENT 'host:pid of the aggregator that wrote it',
  PRIMARY KEY (topic, part)
) ENGINE=InnoDB
