-- Compose stacks: the routing projection sends a stack's routes to the
-- addresses of the service each names (service → hosts), and a deployment's
-- row shows the state of each of its services.
ALTER TABLE rm_apps ADD COLUMN service_hosts jsonb NOT NULL DEFAULT '{}';
ALTER TABLE rm_deployments ADD COLUMN services jsonb NOT NULL DEFAULT '{}';
