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
-- its row and its stored prev_hash (NULL when the row does not exist). It is
-- for auditors working in SQL; the store verifies in the application.
CREATE FUNCTION berth_event_hash(p_position bigint) RETURNS bytea
LANGUAGE sql STABLE
AS $$
    SELECT sha256(e.prev_hash || berth_event_encoding(e.position, e.stream_version,
        convert_to(e.stream_id, 'UTF8'), convert_to(e.type, 'UTF8'), e.event_id, e.schema_version,
        convert_to(e.data::text, 'UTF8'), convert_to(e.metadata::text, 'UTF8'),
        (extract(epoch FROM e.recorded_at) * 1000000)::bigint))
    FROM events e WHERE e.position = p_position
$$;

-- berth_append writes a group commit of append requests in one statement,
-- under the head row lock: it checks every request on its own (duplicate
-- event ids, expected versions), assigns gapless positions and stream
-- versions to the requests that pass, computes their hash chain, inserts
-- them, moves the stream versions and the head, and notifies p_channel with
-- the new head. A failed request does not fail the others. Run it at READ
-- COMMITTED: every statement after the lock then sees the latest commits.
--
-- Requests are given as stream appends (a_*), in request order, each naming
-- its request (a_req, 1-based, non-decreasing), its stream (a_slot, an index
-- into u_stream, whose ids are distinct), its expected version (-1 any, 0 no
-- stream, N exact) and its event count; and as events (e_*), in the same
-- order, each naming its stream append (e_a), its 1-based ordinal within it
-- (e_k) and its stream id (e_stream). Event ids must be distinct across the
-- whole call.
--
-- One row is returned per request: code 0 written (first_position is the
-- position of its first event, the others follow; versions holds each stream
-- append's new version), 1 duplicate (every id existed in the same stream:
-- positions holds the original positions, versions the highest stream
-- version per stream append), 2 an id is used in another stream, 3 only some
-- ids exist, 4 an expected version does not hold (bad_append is the index
-- of the stream append, actual the stream's current version).
CREATE FUNCTION berth_append(
    a_req integer[], a_slot integer[], a_expected bigint[], a_count integer[], u_stream text[],
    e_a integer[], e_k integer[], e_stream text[], e_id uuid[], e_type text[], e_schema integer[],
    e_data jsonb[], e_meta jsonb[], p_channel text
) RETURNS TABLE (req integer, code integer, bad_append integer, actual bigint, first_position bigint, positions bigint[], versions bigint[])
LANGUAGE plpgsql
AS $$
DECLARE
    head_pos   bigint;
    head_hash  bytea;
    ts         timestamptz;
    micros     bigint;
    ver        bigint[];
    base       bigint[];
    accepted   boolean[];
    changed    boolean[];
    n_found    integer;
    ex_pos     bigint[];
    ex_stream  text[];
    ex_ver     bigint[];
    n_append   integer := coalesce(array_length(a_req, 1), 0);
    a          integer := 1;
    a_hi       integer;
    e_lo       integer := 1;
    e_hi       integer;
    i          integer;
    k          integer;
    j          integer;
    nf         integer;
    other      boolean;
    next_pos   bigint;
    n_new      integer := 0;
    n_event    integer := coalesce(array_length(e_id, 1), 0);
    pos_base   bigint[];
    pk         bigint;
    sb         bytea;
    tb         bytea;
    db         bytea;
    mb         bytea;
    dd         jsonb[];
    mm         jsonb[];
    ss         text[];
    tt         text[];
    hashes     bytea[];
    prevs      bytea[];
    h          bytea;
BEGIN
    SELECT eh.position, eh.hash INTO head_pos, head_hash FROM event_head eh WHERE eh.id FOR UPDATE;
    ts := date_trunc('microseconds', clock_timestamp());
    micros := (extract(epoch FROM ts) * 1000000)::bigint;
    next_pos := head_pos + 1;

    ver := ARRAY(SELECT coalesce((SELECT s.version FROM streams s WHERE s.stream_id = u.sid), 0)
                 FROM unnest(u_stream) WITH ORDINALITY AS u(sid, n) ORDER BY u.n);
    base := array_fill(0::bigint, ARRAY[n_append]);
    pos_base := array_fill(0::bigint, ARRAY[n_append]);
    accepted := array_fill(false, ARRAY[n_append]);
    changed := array_fill(false, ARRAY[coalesce(array_length(u_stream, 1), 0)]);

    SELECT count(*) INTO n_found FROM events ev WHERE ev.event_id = ANY(e_id);
    IF n_found > 0 THEN
        SELECT array_agg(ev.position ORDER BY u.n), array_agg(ev.stream_id ORDER BY u.n), array_agg(ev.stream_version ORDER BY u.n)
        INTO ex_pos, ex_stream, ex_ver
        FROM unnest(e_id) WITH ORDINALITY AS u(id, n) LEFT JOIN events ev ON ev.event_id = u.id;
    END IF;

    WHILE a <= n_append LOOP
        req := a_req[a];
        a_hi := a;
        WHILE a_hi < n_append AND a_req[a_hi + 1] = req LOOP
            a_hi := a_hi + 1;
        END LOOP;
        e_hi := e_lo - 1;
        FOR i IN a..a_hi LOOP
            e_hi := e_hi + a_count[i];
        END LOOP;
        code := 0; bad_append := NULL; actual := NULL; first_position := NULL; positions := NULL; versions := NULL;

        IF n_found > 0 THEN
            nf := 0; other := false; k := e_lo;
            FOR i IN a..a_hi LOOP
                FOR j IN k..k + a_count[i] - 1 LOOP
                    IF ex_pos[j] IS NOT NULL THEN
                        IF ex_stream[j] = u_stream[a_slot[i]] THEN
                            nf := nf + 1;
                        ELSE
                            other := true;
                        END IF;
                    END IF;
                END LOOP;
                k := k + a_count[i];
            END LOOP;
            IF other THEN
                code := 2;
            ELSIF nf = e_hi - e_lo + 1 THEN
                code := 1;
                positions := ex_pos[e_lo:e_hi];
                versions := ARRAY[]::bigint[];
                k := e_lo;
                FOR i IN a..a_hi LOOP
                    versions := versions || (SELECT max(x) FROM unnest(ex_ver[k:k + a_count[i] - 1]) AS x);
                    k := k + a_count[i];
                END LOOP;
            ELSIF nf > 0 THEN
                code := 3;
            END IF;
        END IF;

        IF code = 0 THEN
            FOR i IN a..a_hi LOOP
                IF a_expected[i] <> -1 AND a_expected[i] <> ver[a_slot[i]] THEN
                    code := 4; bad_append := i; actual := ver[a_slot[i]];
                    EXIT;
                END IF;
            END LOOP;
        END IF;

        IF code = 0 THEN
            versions := ARRAY[]::bigint[];
            pk := next_pos;
            FOR i IN a..a_hi LOOP
                pos_base[i] := pk;
                pk := pk + a_count[i];
                base[i] := ver[a_slot[i]];
                ver[a_slot[i]] := ver[a_slot[i]] + a_count[i];
                changed[a_slot[i]] := true;
                accepted[i] := true;
                versions := versions || ver[a_slot[i]];
            END LOOP;
            first_position := next_pos;
            next_pos := next_pos + (e_hi - e_lo + 1);
            n_new := n_new + (e_hi - e_lo + 1);
        END IF;

        RETURN NEXT;
        a := a_hi + 1;
        e_lo := e_hi + 1;
    END LOOP;

    IF n_new = 0 THEN
        RETURN;
    END IF;

    -- Chain the accepted events in position order. Array variables are
    -- expanded on assignment, which makes element access O(1).
    dd := e_data;
    mm := e_meta;
    ss := e_stream;
    tt := e_type;
    hashes := array_fill(NULL::bytea, ARRAY[n_event]);
    prevs := array_fill(NULL::bytea, ARRAY[n_event]);
    h := head_hash;
    FOR i IN 1..n_event LOOP
        a := e_a[i];
        CONTINUE WHEN NOT accepted[a];
        prevs[i] := h;
        sb := convert_to(ss[i], 'UTF8');
        tb := convert_to(tt[i], 'UTF8');
        db := convert_to(dd[i]::text, 'UTF8');
        mb := convert_to(mm[i]::text, 'UTF8');
        h := sha256(h || berth_event_encoding(pos_base[a] + e_k[i] - 1, base[a] + e_k[i], sb, tb, e_id[i], e_schema[i]::bigint, db, mb, micros));
        hashes[i] := h;
    END LOOP;

    INSERT INTO events (position, stream_id, stream_version, event_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
    SELECT pos_base[u.a] + u.k - 1, u.s, base[u.a] + u.k, u.id, u.typ, u.sv, u.d, u.m, ts, u.p, u.h
    FROM unnest(e_a, e_k, e_stream, e_id, e_type, e_schema, e_data, e_meta, prevs, hashes) AS u(a, k, s, id, typ, sv, d, m, p, h)
    WHERE accepted[u.a];

    INSERT INTO streams (stream_id, version)
    SELECT u.sid, u.v FROM unnest(u_stream, ver, changed) AS u(sid, v, c) WHERE u.c
    ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version;

    UPDATE event_head SET position = head_pos + n_new, hash = h WHERE id;
    PERFORM pg_notify(p_channel, (head_pos + n_new)::text);
    RETURN;
END
$$;
