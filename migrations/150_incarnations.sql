-- A deleted application's name can be used again: each application that
-- had a name is an incarnation of it, numbered from 1 (app.created carries
-- it). rm_apps shows the latest incarnation; each deployment keeps the
-- incarnation it belongs to, so an earlier incarnation's deployments stay
-- apart from the later one's.
ALTER TABLE rm_apps ADD COLUMN incarnation integer NOT NULL DEFAULT 1;
ALTER TABLE rm_deployments ADD COLUMN incarnation integer NOT NULL DEFAULT 1;
CREATE INDEX rm_deployments_app_incarnation ON rm_deployments (app, incarnation, requested_at DESC, id);
