-- An environment's flag-set metadata (a flagd file's top-level `metadata`), reported with
-- every flag's evaluation: a JSON object, `{}` for environments from before it existed.
-- MEDIUMTEXT, as the other documents; a TEXT column takes a default only as an expression
-- (MySQL 8.0.13 and later, MariaDB 10.2 and later).
ALTER TABLE environments ADD COLUMN metadata MEDIUMTEXT NOT NULL DEFAULT ('{}');
