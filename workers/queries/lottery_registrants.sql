-- The registrant list to freeze: each user once, with the group of their first registration.
SELECT DISTINCT ON (user_id) user_id, grp FROM registrations
WHERE tournament = $1 ORDER BY user_id, stream_seq
