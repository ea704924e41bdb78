-- An environment's flag-set metadata (a flagd file's top-level `metadata`), reported with
-- every flag's evaluation: a JSON object, `{}` for environments from before it existed.
ALTER TABLE environments ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
