-- Where to email a registrant; their first registration's address stands (a retry or a
-- second registration changes nothing).
INSERT INTO registrant_contacts (tournament, user_id, email, time_zone)
VALUES ($1, $2, $3, $4)
ON CONFLICT (tournament, user_id) DO NOTHING
