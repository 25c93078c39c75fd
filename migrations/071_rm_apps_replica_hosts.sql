-- The routing projection writes Traefik files from rm_apps rows instead of
-- folding the log into memory: the rows carry the other replicas' hosts
-- Traefik spreads traffic over.
ALTER TABLE rm_apps ADD COLUMN replica_hosts text[] NOT NULL DEFAULT '{}';
