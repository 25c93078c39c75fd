-- notification_deliveries is a table of record (the outcome of every send
-- attempt): a trigger refuses UPDATE, DELETE and TRUNCATE, as on the log.
CREATE FUNCTION notification_deliveries_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'berth: % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER notification_deliveries_append_only BEFORE UPDATE OR DELETE ON notification_deliveries
    FOR EACH ROW EXECUTE FUNCTION notification_deliveries_append_only();
CREATE TRIGGER notification_deliveries_no_truncate BEFORE TRUNCATE ON notification_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION notification_deliveries_append_only();
