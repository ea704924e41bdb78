-- flagd's initial schema (SQLite). Keep the logical schema identical to the MySQL and
-- PostgreSQL migrations: the store's queries are shared.

CREATE TABLE environments (
    name       TEXT   NOT NULL PRIMARY KEY,
    created_at BIGINT NOT NULL
);

CREATE TABLE flags (
    "key"      TEXT   NOT NULL PRIMARY KEY,
    definition TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE configs (
    flag        TEXT   NOT NULL,
    environment TEXT   NOT NULL,
    config      TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    updated_by  TEXT   NOT NULL,
    PRIMARY KEY (flag, environment)
);
CREATE INDEX configs_by_environment ON configs (environment, flag);

CREATE TABLE segments (
    environment TEXT   NOT NULL,
    "key"       TEXT   NOT NULL,
    definition  TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    PRIMARY KEY (environment, "key")
);

-- AUTOINCREMENT so ids are never reused: they are the audit log's paging cursor.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    seq         BIGINT  NOT NULL,
    actor       TEXT    NOT NULL,
    at          BIGINT  NOT NULL,
    action      TEXT    NOT NULL,
    environment TEXT,
    flag        TEXT,
    segment     TEXT,
    before_doc  TEXT,
    after_doc   TEXT,
    reason      TEXT
);
CREATE INDEX audit_by_flag ON audit (flag, id);
CREATE INDEX audit_by_environment ON audit (environment, id);
CREATE INDEX audit_by_actor ON audit (actor, id);
CREATE INDEX audit_by_time ON audit (at);

CREATE TABLE tokens (
    id          TEXT   NOT NULL PRIMARY KEY,
    name        TEXT   NOT NULL,
    role        TEXT   NOT NULL,
    environment TEXT,
    hash        TEXT   NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX tokens_by_creation ON tokens (created_at);

CREATE TABLE change_seq (
    id  BIGINT NOT NULL PRIMARY KEY,
    seq BIGINT NOT NULL
);
INSERT INTO change_seq (id, seq) VALUES (1, 0);
