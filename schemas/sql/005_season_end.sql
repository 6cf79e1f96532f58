-- When the end-of-season grants of a season (grantUnclaimedAtEnd) were completed.
ALTER TABLE seasons ADD COLUMN closed_at timestamptz;
