-- Kafka messages decided inside a balance transaction (campaign_stopped control events, dead letters
-- of events for unknown campaigns or accounts): written with the transaction, published after it,
-- deleted once Kafka acknowledged them. A row still here after a crash is sent again, same event id.
CREATE TABLE IF NOT EXISTS {outbox} (
  event_id VARCHAR(64) NOT NULL,
  topic VARCHAR(249) NOT NULL,
  msg_key VARBINARY(255) NULL,
  value MEDIUMBLOB NOT NULL,
  headers BLOB NOT NULL COMMENT 'JSON object of header name -> text',
  created_at DATETIME(6) NOT NULL COMMENT 'UTC; rows older than control_resend_after are sent again',
  PRIMARY KEY (event_id),
  KEY (created_at)
) ENGINE=InnoDB
