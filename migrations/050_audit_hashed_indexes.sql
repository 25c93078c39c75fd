-- The audit trail is filtered by equality on its actor, action, target and
-- correlation and paged by position. Its indexes now lead with a 4-byte
-- hash of the filtered text instead of the text itself: a rebuild sorts the
-- whole trail once per index, and sorting (text, bigint) keys, most of them
-- tied on the text (a few actors and actions, long common prefixes), spent
-- its time comparing text and digging the position out from behind it.
-- Queries match hashtext(column) = hashtext($value) AND column = $value,
-- so the index still gives the rows of one value in position order, and the
-- rare value that shares a hash is filtered out. hashtext is what hash
-- indexes and hash partitioning use; should it ever change, rebuilding the
-- read model rebuilds the indexes.
DROP INDEX rm_audit_target, rm_audit_actor, rm_audit_action, rm_audit_correlation;
CREATE INDEX rm_audit_target ON rm_audit ((hashtext(target)), position);
CREATE INDEX rm_audit_actor ON rm_audit ((hashtext(actor_id)), position);
CREATE INDEX rm_audit_action ON rm_audit ((hashtext(action)), position);
CREATE INDEX rm_audit_correlation ON rm_audit ((hashtext(correlation_id)), position);

-- A rebuild COPYs the steps of every deployment ever requested, and
-- parsing them into jsonb was a third of that load; nothing queries inside
-- them (they are read back whole, by encoding/json), so json, which is
-- only validated and kept as written, serves. The keys of rm_deployments
-- compare bytes (COLLATE "C"): they are ids and names, looked up by
-- equality, and ordered only to page deterministically.
ALTER TABLE rm_deployments
    ALTER COLUMN id    TYPE text COLLATE "C",
    ALTER COLUMN app   TYPE text COLLATE "C",
    ALTER COLUMN steps TYPE json USING steps::json;
