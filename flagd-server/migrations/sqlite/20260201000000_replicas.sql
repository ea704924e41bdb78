-- Replicas following the change sequence: each records what it has applied, so a write
-- can wait until every live replica serves it.
CREATE TABLE replicas (
    id          TEXT    PRIMARY KEY,
    address     TEXT    NOT NULL,
    applied_seq BIGINT  NOT NULL,
    started_at  BIGINT  NOT NULL,
    last_seen   BIGINT  NOT NULL
);

-- A replica catching up reads the audit events after the sequence number it applied.
CREATE INDEX audit_by_seq ON audit (seq);
