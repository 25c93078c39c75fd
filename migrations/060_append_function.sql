-- berth_append writes one batch of appends in the calling transaction: it
-- locks the head row, decides every append on its own (a duplicate, a
-- conflict, a wrong expected version, or written), positions the written
-- events gaplessly after the head, hashes them over berth_event_encoding's
-- bytes (migration 040) with PostgreSQL's own text of the jsonb stored,
-- inserts them, moves the streams and the head, and notifies p_channel with
-- the new head.
--
-- Everything that does not depend on the head is done before the lock, so
-- that it runs while another batch holds it: parsing the documents, the
-- part of each encoding after position and stream version, and looking up
-- the event ids (an id inserted meanwhile by another batch makes the
-- insert fail on its unique constraint, and the caller writes the appends
-- again one by one).
--
-- The batch is given as parallel arrays. Per stream append (one entry per
-- stream of each append, appends one after the other): p_req, the number of
-- its append (equal for the streams of one append); p_stream; p_expected
-- (-1 any, 0 no stream, n exactly n); p_count, its number of events. Per
-- event, in order: p_event_id, p_type, p_schema, p_data, p_meta (JSON text),
-- p_sa (the number of its stream append, from 1) and p_off (its number in
-- that stream append, from 1).
--
-- It returns one row per stream append decided: r_outcome 'ok' (r_version
-- the stream's new version, r_positions its events' positions), 'duplicate'
-- (every event id of the append exists in the same streams: the versions and
-- positions they were written at), 'version' (r_sa names the stream whose
-- version, r_version, is not the one expected) or 'conflict' (some of the
-- event ids exist, or exist in another stream). A failed append returns one
-- row and writes nothing; the others are not affected.
CREATE FUNCTION berth_append(
    p_req int[], p_stream text[], p_expected bigint[], p_count int[],
    p_event_id uuid[], p_type text[], p_schema int[], p_data text[], p_meta text[],
    p_sa int[], p_off int[], p_channel text
) RETURNS TABLE (r_sa int, r_outcome text, r_version bigint, r_positions bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    v_head bigint;
    v_hash bytea;
    v_versions jsonb;      -- stream -> version, as left by the appends decided so far
    v_found jsonb;         -- event id -> [position, stream, version] of the ids that exist
    v_changed jsonb := '{}';
    v_n int := coalesce(cardinality(p_req), 0);
    v_at timestamptz := now();
    a int := 1;            -- first stream append of the current append
    b int;                 -- its last
    ev int := 1;           -- first event of the current append
    i int;
    k int;
    j int;
    n_events int;
    n_found int;
    elsewhere boolean;
    bad int;
    cur bigint;
    n_written int := 0;
    sa_pos bigint[] := array_fill(NULL::bigint, ARRAY[v_n]);  -- position before the first event of each stream append written
    sa_ver bigint[] := array_fill(NULL::bigint, ARRAY[v_n]);  -- its stream's version before it
    pre_d jsonb[];         -- data and metadata, parsed
    pre_m jsonb[];
    pre_tail bytea[];      -- each event's encoding after position and stream version
    x_prev bytea[];        -- per event: prev_hash and hash, NULL when not written
    x_hash bytea[];
BEGIN
    SELECT array_agg(y.d ORDER BY y.n), array_agg(y.m ORDER BY y.n),
           array_agg(substr(berth_event_encoding(0, 0, y.sb, y.tb, y.id, y.sv, y.db, y.mb,
                                                 (extract(epoch FROM v_at) * 1000000)::bigint), 32) ORDER BY y.n)
        INTO pre_d, pre_m, pre_tail
        FROM (SELECT x.n, x.d, x.m, x.id, x.sv, convert_to(x.s, 'UTF8') AS sb, convert_to(x.t, 'UTF8') AS tb,
                     convert_to(x.d::text, 'UTF8') AS db, convert_to(x.m::text, 'UTF8') AS mb
              FROM (SELECT u.n, u.id, u.t, u.sv::bigint AS sv, p_stream[u.sa] AS s, u.d::jsonb AS d, u.m::jsonb AS m
                    FROM unnest(p_event_id, p_type, p_schema, p_data, p_meta, p_sa) WITH ORDINALITY AS u(id, t, sv, d, m, sa, n)
                    OFFSET 0) x
              OFFSET 0) y;
    SELECT coalesce(jsonb_object_agg(e.event_id::text, jsonb_build_array(e.position, e.stream_id, e.stream_version)), '{}')
        INTO v_found FROM events e WHERE e.event_id = ANY (p_event_id);
    x_prev := array_fill(NULL::bytea, ARRAY[cardinality(p_event_id)]);
    x_hash := x_prev;

    SELECT h.position, h.hash INTO v_head, v_hash FROM event_head h WHERE h.id FOR UPDATE;
    SELECT coalesce(jsonb_object_agg(s.stream_id, s.version), '{}') INTO v_versions
        FROM streams s WHERE s.stream_id = ANY (p_stream);

    WHILE a <= v_n LOOP
        b := a;
        WHILE b < v_n AND p_req[b + 1] = p_req[a] LOOP
            b := b + 1;
        END LOOP;
        n_events := 0;
        FOR k IN a..b LOOP
            n_events := n_events + p_count[k];
        END LOOP;

        n_found := 0;
        elsewhere := false;
        IF v_found <> '{}' THEN
            j := ev;
            FOR k IN a..b LOOP
                FOR i IN j..j + p_count[k] - 1 LOOP
                    IF v_found ? p_event_id[i]::text THEN
                        IF v_found -> p_event_id[i]::text ->> 1 = p_stream[k] THEN
                            n_found := n_found + 1;
                        ELSE
                            elsewhere := true;
                        END IF;
                    END IF;
                END LOOP;
                j := j + p_count[k];
            END LOOP;
        END IF;

        IF elsewhere OR (n_found > 0 AND n_found < n_events) THEN
            r_sa := a; r_outcome := 'conflict'; r_version := NULL; r_positions := NULL;
            RETURN NEXT;
        ELSIF n_found > 0 THEN
            j := ev;
            FOR k IN a..b LOOP
                r_sa := k; r_outcome := 'duplicate';
                SELECT array_agg((v_found -> p_event_id[g.n]::text ->> 0)::bigint ORDER BY g.n),
                       max((v_found -> p_event_id[g.n]::text ->> 2)::bigint)
                    INTO r_positions, r_version
                    FROM generate_series(j, j + p_count[k] - 1) AS g(n);
                RETURN NEXT;
                j := j + p_count[k];
            END LOOP;
        ELSE
            bad := 0;
            FOR k IN a..b LOOP
                cur := coalesce((v_versions ->> p_stream[k])::bigint, 0);
                IF p_expected[k] <> -1 AND p_expected[k] <> cur THEN
                    bad := k;
                    EXIT;
                END IF;
            END LOOP;
            IF bad > 0 THEN
                r_sa := bad; r_outcome := 'version'; r_version := cur; r_positions := NULL;
                RETURN NEXT;
            ELSE
                -- Written: position, version and chain hash of each event.
                j := ev;
                FOR k IN a..b LOOP
                    cur := coalesce((v_versions ->> p_stream[k])::bigint, 0);
                    r_sa := k; r_outcome := 'ok'; r_version := cur + p_count[k];
                    r_positions := ARRAY(SELECT generate_series(v_head + 1, v_head + p_count[k]));
                    sa_pos[k] := v_head;
                    sa_ver[k] := cur;
                    FOR i IN j..j + p_count[k] - 1 LOOP
                        v_head := v_head + 1;
                        cur := cur + 1;
                        x_prev[i] := v_hash;
                        v_hash := sha256(v_hash || '\x62657274682e6576656e742e763100'::bytea
                                         || int8send(v_head) || int8send(cur) || pre_tail[i]);
                        x_hash[i] := v_hash;
                    END LOOP;
                    n_written := n_written + p_count[k];
                    v_versions := v_versions || jsonb_build_object(p_stream[k], r_version);
                    v_changed := v_changed || jsonb_build_object(p_stream[k], r_version);
                    RETURN NEXT;
                    j := j + p_count[k];
                END LOOP;
            END IF;
        END IF;
        ev := ev + n_events;
        a := b + 1;
    END LOOP;

    IF n_written = 0 THEN
        RETURN;
    END IF;

    INSERT INTO events (position, stream_id, stream_version, event_id, type, schema_version, data, metadata,
                        recorded_at, prev_hash, hash)
    SELECT sa_pos[u.sa] + u.off, p_stream[u.sa], sa_ver[u.sa] + u.off, u.id, u.t, u.sv, u.d, u.m, v_at, u.ph, u.h
    FROM unnest(p_event_id, p_type, p_schema, pre_d, pre_m, p_sa, p_off, x_prev, x_hash) AS u(id, t, sv, d, m, sa, off, ph, h)
    WHERE u.h IS NOT NULL;

    INSERT INTO streams (stream_id, version)
    SELECT c.key, c.value::bigint FROM jsonb_each_text(v_changed) AS c
    ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version;

    UPDATE event_head SET position = v_head, hash = v_hash WHERE id;
    PERFORM pg_notify(p_channel, v_head::text);
END;
$$;
