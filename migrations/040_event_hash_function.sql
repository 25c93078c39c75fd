-- berth_event_encoding returns the canonical encoding of one event that the
-- hash chain covers, byte for byte the one core.Hasher writes: the tag
-- "berth.event.v1\0"; position and stream_version (int8, big-endian);
-- stream_id and type (int4 length, then UTF-8 bytes); the 16 bytes of the
-- event id; schema_version (int8); jsonb's text output of data and metadata
-- (int4 length, then UTF-8 bytes); recorded_at as Unix microseconds (int8).
-- Text arguments are given already converted to UTF-8 bytes (convert_to), so
-- the function is a single expression that the planner inlines.
CREATE FUNCTION berth_event_encoding(
    p_position bigint, p_stream_version bigint, p_stream_id bytea, p_type bytea, p_event_id uuid,
    p_schema_version bigint, p_data bytea, p_metadata bytea, p_micros bigint
) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT '\x62657274682e6576656e742e763100'::bytea
        || int8send(p_position) || int8send(p_stream_version)
        || int4send(octet_length(p_stream_id)) || p_stream_id
        || int4send(octet_length(p_type)) || p_type
        || uuid_send(p_event_id)
        || int8send(p_schema_version)
        || int4send(octet_length(p_data)) || p_data
        || int4send(octet_length(p_metadata)) || p_metadata
        || int8send(p_micros)
$$;

-- berth_event_hash recomputes the stored hash of the event at p_position from
-- its row and its stored prev_hash (NULL when the row does not exist), so an
-- auditor can check the chain in SQL alone:
--   SELECT position FROM events WHERE hash <> berth_event_hash(position);
-- The store itself verifies in the application (Postgres.Verify).
CREATE FUNCTION berth_event_hash(p_position bigint) RETURNS bytea
LANGUAGE sql STABLE
AS $$
    SELECT sha256(e.prev_hash || berth_event_encoding(e.position, e.stream_version,
        convert_to(e.stream_id, 'UTF8'), convert_to(e.type, 'UTF8'), e.event_id, e.schema_version,
        convert_to(e.data::text, 'UTF8'), convert_to(e.metadata::text, 'UTF8'),
        (extract(epoch FROM e.recorded_at) * 1000000)::bigint))
    FROM events e WHERE e.position = p_position
$$;
