-- The log and every table of record are append-only in the database: a
-- trigger refuses UPDATE, DELETE and TRUNCATE, whoever asks (the owner
-- included: only someone who can disable triggers, i.e. the owner on
-- purpose, gets past it, and signed checkpoints show what that changed).
--
-- Tables of record: events (the log), deployment_logs and
-- deployment_log_ends (build output the deployments' final events digest),
-- webhook_deliveries (the outcome of every delivery attempt). Everything else
-- is state derived from the log or kept beside it on purpose, and stays
-- writable: the head and stream versions (moved by every append), checkpoints
-- and read models (rebuilt from the log), data keys (destroyed to shred
-- secrets), credentials, sessions, tokens and webhook cursors.
CREATE FUNCTION berth_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'berth: % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

DROP TRIGGER deployment_logs_append_only ON deployment_logs;
DROP TRIGGER deployment_log_ends_append_only ON deployment_log_ends;
DROP FUNCTION deployment_logs_append_only();

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION berth_refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION berth_refuse_change();
CREATE TRIGGER deployment_logs_append_only BEFORE UPDATE OR DELETE ON deployment_logs
    FOR EACH ROW EXECUTE FUNCTION berth_refuse_change();
CREATE TRIGGER deployment_logs_no_truncate BEFORE TRUNCATE ON deployment_logs
    FOR EACH STATEMENT EXECUTE FUNCTION berth_refuse_change();
CREATE TRIGGER deployment_log_ends_append_only BEFORE UPDATE OR DELETE ON deployment_log_ends
    FOR EACH ROW EXECUTE FUNCTION berth_refuse_change();
CREATE TRIGGER deployment_log_ends_no_truncate BEFORE TRUNCATE ON deployment_log_ends
    FOR EACH STATEMENT EXECUTE FUNCTION berth_refuse_change();
CREATE TRIGGER webhook_deliveries_append_only BEFORE UPDATE OR DELETE ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION berth_refuse_change();
CREATE TRIGGER webhook_deliveries_no_truncate BEFORE TRUNCATE ON webhook_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION berth_refuse_change();

-- berth_grant_runtime gives p_role, the role berth serve runs as, what it
-- needs and no more: SELECT and INSERT on the tables of record (those whose
-- changes berth_refuse_change refuses), SELECT on the migrations' version
-- table, SELECT, INSERT, UPDATE and DELETE on every other table of the
-- schema, and the use of its sequences. It revokes anything else the role
-- held on them (DDL, TRUNCATE, REFERENCES, TRIGGER). The owner runs it after
-- every migration (berth migrate --runtime-role), so tables added later are
-- covered too.
CREATE FUNCTION berth_grant_runtime(p_role name) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t record;
    privs text;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', p_role);
    FOR t IN
        SELECT c.relname,
               EXISTS (SELECT FROM pg_trigger g JOIN pg_proc p ON p.oid = g.tgfoid
                       WHERE g.tgrelid = c.oid AND p.proname = 'berth_refuse_change') AS of_record
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
    LOOP
        privs := CASE
            WHEN t.relname = 'schema_version' THEN 'SELECT'
            WHEN t.of_record THEN 'SELECT, INSERT'
            ELSE 'SELECT, INSERT, UPDATE, DELETE'
        END;
        EXECUTE format('REVOKE ALL ON TABLE public.%I FROM %I', t.relname, p_role);
        EXECUTE format('GRANT %s ON TABLE public.%I TO %I', privs, t.relname, p_role);
    END LOOP;
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO %I', p_role);
END;
$$;
