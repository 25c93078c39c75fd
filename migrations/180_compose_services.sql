-- Compose stacks: the routing projection sends a stack's routes to the
-- addresses of the service each names (service → hosts), and a deployment's
-- row shows the state of each of its services. json, not jsonb: a rebuild
-- COPYs them as text (see 050).
ALTER TABLE rm_apps ADD COLUMN service_hosts json NOT NULL DEFAULT '{}';
ALTER TABLE rm_deployments ADD COLUMN services json NOT NULL DEFAULT '{}';
