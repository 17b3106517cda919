-- Search that scales: an index per searchable canonical column, in binary order (COLLATE "C"), so that an exact
-- match and a prefix (a range of the index) are index scans whatever the database's collation. They cover deleted
-- users too (show_deleted); the partial unique indexes do not.
CREATE INDEX users_email_search ON users ((lower(email) COLLATE "C"));
CREATE INDEX users_nickname_search ON users ((nickname COLLATE "C"));
CREATE INDEX users_last_name_search ON users ((lower(last_name) COLLATE "C"));
