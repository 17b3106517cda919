-- Who made each change (CloudEvents authcontext: authtype, authid). Empty for events written before, and for the
-- service's own work (purging deleted users past their purge_time).
ALTER TABLE user_events ADD COLUMN authtype text, ADD COLUMN authid text;
