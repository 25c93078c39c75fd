-- The migrations applied to this database, by number: every embedded
-- migration whose number is not here is applied, in number order, so a
-- migration numbered below one already applied (merged from a parallel
-- branch) is applied too. Migrate creates this table before any migration
-- runs, and fills it once from the count-based version table
-- (schema_version: the first `version` files in number order) it replaces.
CREATE TABLE IF NOT EXISTS public.schema_migrations (
    number     integer     PRIMARY KEY CHECK (number >= 0),
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
