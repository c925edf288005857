-- An API key's name (`keepwatch api-key create --name ci`), recorded with what the key does:
-- "api key ci (alice)" in an alert's log.
ALTER TABLE api_keys ADD COLUMN name TEXT NOT NULL DEFAULT '';
