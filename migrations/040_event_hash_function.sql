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
-- whole call. An event id that already exists is found by the unique index
-- during the INSERT, which is then retried once after looking the ids up, so
-- the common case costs no extra lookup.
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
-- Custom plans would be rebuilt on every call (array parameters make them
-- look cheaper); every statement here has one good plan.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    n_append   integer := coalesce(array_length(a_req, 1), 0);
    n_event    integer := coalesce(array_length(e_id, 1), 0);
    n_req      integer := coalesce(a_req[n_append], 0);
    head_pos   bigint;
    head_hash  bytea;
    ts         timestamptz;
    micros     bigint;
    ver0       bigint[];
    ver        bigint[];
    base       bigint[];
    pos_base   bigint[];
    app_ver    bigint[];
    accepted   boolean[];
    changed    boolean[];
    r_code     integer[];
    r_bad      integer[];
    r_actual   bigint[];
    r_first    bigint[];
    r_alo      integer[];
    r_ahi      integer[];
    r_elo      integer[];
    r_ehi      integer[];
    checked    boolean := false;
    ex_pos     bigint[];
    ex_stream  text[];
    ex_ver     bigint[];
    a          integer;
    a_hi       integer;
    e_lo       integer;
    e_hi       integer;
    r          integer;
    i          integer;
    k          integer;
    j          integer;
    nf         integer;
    other      boolean;
    c          integer;
    next_pos   bigint;
    pk         bigint;
    n_new      integer;
    dd         jsonb[] := e_data;
    mm         jsonb[] := e_meta;
    ss         text[] := e_stream;
    tt         text[] := e_type;
    hashes     bytea[];
    prevs      bytea[];
    h          bytea;
    sb         bytea;
    tb         bytea;
    db         bytea;
    mb         bytea;
BEGIN
    SELECT eh.position, eh.hash INTO head_pos, head_hash FROM event_head eh WHERE eh.id FOR UPDATE;
    ts := date_trunc('microseconds', clock_timestamp());
    micros := (extract(epoch FROM ts) * 1000000)::bigint;
    ver0 := ARRAY(SELECT coalesce((SELECT s.version FROM streams s WHERE s.stream_id = u.sid), 0)
                  FROM unnest(u_stream) WITH ORDINALITY AS u(sid, n) ORDER BY u.n);

    -- The first pass assumes that no event id exists yet and lets the
    -- unique index on event_id prove it during the INSERT. When it does not
    -- hold, the pass is rolled back and the second one looks the ids up.
    LOOP
        ver := ver0;
        base := array_fill(0::bigint, ARRAY[n_append]);
        pos_base := array_fill(0::bigint, ARRAY[n_append]);
        app_ver := array_fill(NULL::bigint, ARRAY[n_append]);
        accepted := array_fill(false, ARRAY[n_append]);
        changed := array_fill(false, ARRAY[coalesce(array_length(u_stream, 1), 0)]);
        r_code := array_fill(0, ARRAY[n_req]);
        r_bad := array_fill(NULL::integer, ARRAY[n_req]);
        r_actual := array_fill(NULL::bigint, ARRAY[n_req]);
        r_first := array_fill(NULL::bigint, ARRAY[n_req]);
        r_alo := array_fill(0, ARRAY[n_req]);
        r_ahi := array_fill(0, ARRAY[n_req]);
        r_elo := array_fill(0, ARRAY[n_req]);
        r_ehi := array_fill(0, ARRAY[n_req]);
        next_pos := head_pos + 1;
        n_new := 0;
        a := 1;
        e_lo := 1;

        -- Decide every request.
        WHILE a <= n_append LOOP
            r := a_req[a];
            a_hi := a;
            WHILE a_hi < n_append AND a_req[a_hi + 1] = r LOOP
                a_hi := a_hi + 1;
            END LOOP;
            e_hi := e_lo - 1;
            FOR i IN a..a_hi LOOP
                e_hi := e_hi + a_count[i];
            END LOOP;
            r_alo[r] := a; r_ahi[r] := a_hi; r_elo[r] := e_lo; r_ehi[r] := e_hi;
            c := 0;

            IF checked THEN
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
                    c := 2;
                ELSIF nf = e_hi - e_lo + 1 THEN
                    c := 1;
                    k := e_lo;
                    FOR i IN a..a_hi LOOP
                        app_ver[i] := (SELECT max(x) FROM unnest(ex_ver[k:k + a_count[i] - 1]) AS x);
                        k := k + a_count[i];
                    END LOOP;
                ELSIF nf > 0 THEN
                    c := 3;
                END IF;
            END IF;

            IF c = 0 THEN
                FOR i IN a..a_hi LOOP
                    IF a_expected[i] <> -1 AND a_expected[i] <> ver[a_slot[i]] THEN
                        c := 4; r_bad[r] := i; r_actual[r] := ver[a_slot[i]];
                        EXIT;
                    END IF;
                END LOOP;
            END IF;

            IF c = 0 THEN
                pk := next_pos;
                FOR i IN a..a_hi LOOP
                    pos_base[i] := pk;
                    pk := pk + a_count[i];
                    base[i] := ver[a_slot[i]];
                    ver[a_slot[i]] := ver[a_slot[i]] + a_count[i];
                    app_ver[i] := ver[a_slot[i]];
                    changed[a_slot[i]] := true;
                    accepted[i] := true;
                END LOOP;
                r_first[r] := next_pos;
                next_pos := pk;
                n_new := n_new + (e_hi - e_lo + 1);
            END IF;
            r_code[r] := c;
            a := a_hi + 1;
            e_lo := e_hi + 1;
        END LOOP;

        -- A request failing its version check may be a retry of one that
        -- was written: only the ids can tell.
        IF NOT checked AND 4 = ANY(r_code) THEN
            checked := true;
            SELECT array_agg(ev.position ORDER BY u.n), array_agg(ev.stream_id ORDER BY u.n), array_agg(ev.stream_version ORDER BY u.n)
            INTO ex_pos, ex_stream, ex_ver
            FROM unnest(e_id) WITH ORDINALITY AS u(id, n)
        LEFT JOIN LATERAL (SELECT x.position, x.stream_id, x.stream_version FROM events x WHERE x.event_id = u.id LIMIT 1) ev ON true;
            CONTINUE;
        END IF;
        EXIT WHEN n_new = 0;

        -- Chain the accepted events in position order (array variables are
        -- expanded on assignment, so element access is O(1)), then insert.
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

        IF checked THEN
            INSERT INTO events (position, stream_id, stream_version, event_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
            SELECT pos_base[u.a] + u.k - 1, u.s, base[u.a] + u.k, u.id, u.typ, u.sv, u.d, u.m, ts, u.p, u.h
            FROM unnest(e_a, e_k, e_stream, e_id, e_type, e_schema, e_data, e_meta, prevs, hashes) AS u(a, k, s, id, typ, sv, d, m, p, h)
            WHERE accepted[u.a];
            EXIT;
        END IF;
        BEGIN
            INSERT INTO events (position, stream_id, stream_version, event_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
            SELECT pos_base[u.a] + u.k - 1, u.s, base[u.a] + u.k, u.id, u.typ, u.sv, u.d, u.m, ts, u.p, u.h
            FROM unnest(e_a, e_k, e_stream, e_id, e_type, e_schema, e_data, e_meta, prevs, hashes) AS u(a, k, s, id, typ, sv, d, m, p, h)
            WHERE accepted[u.a];
            EXIT;
        EXCEPTION WHEN unique_violation THEN
            NULL;
        END;
        checked := true;
        SELECT array_agg(ev.position ORDER BY u.n), array_agg(ev.stream_id ORDER BY u.n), array_agg(ev.stream_version ORDER BY u.n)
        INTO ex_pos, ex_stream, ex_ver
        FROM unnest(e_id) WITH ORDINALITY AS u(id, n)
        LEFT JOIN LATERAL (SELECT x.position, x.stream_id, x.stream_version FROM events x WHERE x.event_id = u.id LIMIT 1) ev ON true;
    END LOOP;

    IF n_new > 0 THEN
        INSERT INTO streams (stream_id, version)
        SELECT u.sid, u.v FROM unnest(u_stream, ver, changed) AS u(sid, v, c) WHERE u.c
        ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version;

        UPDATE event_head SET position = head_pos + n_new, hash = h WHERE id;
        PERFORM pg_notify(p_channel, (head_pos + n_new)::text);
    END IF;

    FOR r IN 1..n_req LOOP
        req := r;
        code := r_code[r];
        bad_append := r_bad[r];
        actual := r_actual[r];
        first_position := r_first[r];
        positions := CASE WHEN code = 1 THEN ex_pos[r_elo[r]:r_ehi[r]] END;
        versions := CASE WHEN code IN (0, 1) THEN app_ver[r_alo[r]:r_ahi[r]] END;
        RETURN NEXT;
    END LOOP;
END
$$;
