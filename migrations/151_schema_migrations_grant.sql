-- The runtime role reads the table of applied migrations (schema_migrations)
-- as it reads the old version table: SELECT only. berth_grant_runtime as in
-- 061, with that table added to the read-only ones.
CREATE OR REPLACE FUNCTION berth_grant_runtime(p_role name) RETURNS void
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
            WHEN t.relname IN ('schema_version', 'schema_migrations') THEN 'SELECT'
            WHEN t.of_record THEN 'SELECT, INSERT'
            ELSE 'SELECT, INSERT, UPDATE, DELETE'
        END;
        EXECUTE format('REVOKE ALL ON TABLE public.%I FROM %I', t.relname, p_role);
        EXECUTE format('GRANT %s ON TABLE public.%I TO %I', privs, t.relname, p_role);
    END LOOP;
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO %I', p_role);
END;
$$;
