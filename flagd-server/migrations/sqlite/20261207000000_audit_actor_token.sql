-- The id of the token behind each audited change: token names may repeat (a token rotated
-- under the same name), ids do not. NULL for the server's own changes and for events
-- recorded before it existed.
ALTER TABLE audit ADD COLUMN actor_token TEXT;
