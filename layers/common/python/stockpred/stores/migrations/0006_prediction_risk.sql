-- How much risk a prediction recommends: its volatility forecasts and exposure, sized when the
-- prediction was made (NULL for rows stored before sizing existed).
ALTER TABLE predictions ADD COLUMN risk jsonb;
