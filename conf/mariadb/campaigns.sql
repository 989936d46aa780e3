-- Campaigns: budgets, money spent, and the status the balance aggregator sets when a budget is reached.
-- Rendered by `eventd setup` (names from balance_aggregator.tables); created only if the table is missing.
-- Money is DECIMAL(20,6): exact to the micro-unit. A NULL budget means "no limit".
CREATE TABLE IF NOT EXISTS {campaigns} (
  {campaigns.id} BIGINT NOT NULL,
  {campaigns.advertiser} BIGINT NOT NULL COMMENT 'advertiser account that pays the cost',
  {campaigns.total_budget} DECIMAL(20,6) NULL COMMENT 'stop when spent reaches it; NULL = unlimited',
  {campaigns.daily_budget} DECIMAL(20,6) NULL COMMENT 'stop when the day''s spend reaches it; NULL = unlimited',
  {campaigns.spent} DECIMAL(20,6) NOT NULL DEFAULT 0,
  {campaigns.overspend} DECIMAL(20,6) NOT NULL DEFAULT 0 COMMENT 'charged beyond the budget that stopped it',
  {campaigns.status} VARCHAR(32) NOT NULL DEFAULT {status_active},
  {campaigns.status_reason} VARCHAR(255) NULL,
  {campaigns.status_changed} DATETIME(6) NULL COMMENT 'UTC',
  PRIMARY KEY ({campaigns.id}),
  KEY ({campaigns.advertiser})
) ENGINE=InnoDB
