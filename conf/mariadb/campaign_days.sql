-- Spend per campaign and day. The day is the event's time in balance_aggregator.day_boundary (UTC by default).
CREATE TABLE IF NOT EXISTS {campaign_days} (
  {campaign_days.campaign} BIGINT NOT NULL,
  {campaign_days.day} DATE NOT NULL,
  {campaign_days.spent} DECIMAL(20,6) NOT NULL DEFAULT 0,
  PRIMARY KEY ({campaign_days.campaign}, {campaign_days.day})
) ENGINE=InnoDB
