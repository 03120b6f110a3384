-- Withdrawals (issue 18): the workers find tournaments with new ones, and first-come
-- positions skip them, without reading the draw's statuses.
CREATE INDEX registration_statuses_withdrawn ON registration_statuses (tournament, stream_seq)
    WHERE status = 'withdrawn';
