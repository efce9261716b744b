-- When a prediction last changed (made, or its outcome filled in): the warehouse's high-water mark.
ALTER TABLE predictions ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX predictions_updated ON predictions (updated_at);
CREATE INDEX transactions_traded ON transactions (traded_at);
