-- Account balances: an advertiser's balance goes down by the cost of its campaigns' events,
-- a publisher's goes up by their revenue.
CREATE TABLE IF NOT EXISTS {accounts} (
  {accounts.id} BIGINT NOT NULL,
  {accounts.balance} DECIMAL(20,6) NOT NULL DEFAULT 0,
  PRIMARY KEY ({accounts.id})
) ENGINE=InnoDB
