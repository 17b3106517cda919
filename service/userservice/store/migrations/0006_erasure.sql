-- Erasure and export find a user's events by subject without reading the whole outbox.
CREATE INDEX user_events_subject ON user_events (subject);
