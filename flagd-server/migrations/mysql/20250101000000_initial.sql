-- flagd's initial schema (MySQL / MariaDB). Keep the logical schema identical to the
-- SQLite and PostgreSQL migrations: the store's queries are shared.
--
-- Indexed strings are VARCHAR(191): 191 four-byte utf8mb4 characters fit InnoDB's
-- 767-byte index prefix limit on old row formats. utf8mb4_bin makes comparison and
-- ordering byte-wise, as on SQLite and PostgreSQL (COLLATE "C"), so keys differing only
-- in case stay distinct. Documents are MEDIUMTEXT because TEXT stops at 64 KiB, which a
-- configuration with long company lists can exceed.

CREATE TABLE environments (
    name       VARCHAR(191) NOT NULL PRIMARY KEY,
    created_at BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE flags (
    `key`      VARCHAR(191) NOT NULL PRIMARY KEY,
    definition MEDIUMTEXT   NOT NULL,
    version    BIGINT       NOT NULL,
    created_at BIGINT       NOT NULL,
    updated_at BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE configs (
    flag        VARCHAR(191) NOT NULL,
    environment VARCHAR(191) NOT NULL,
    config      MEDIUMTEXT   NOT NULL,
    version     BIGINT       NOT NULL,
    updated_at  BIGINT       NOT NULL,
    updated_by  VARCHAR(191) NOT NULL,
    PRIMARY KEY (flag, environment),
    INDEX configs_by_environment (environment, flag)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE segments (
    environment VARCHAR(191) NOT NULL,
    `key`       VARCHAR(191) NOT NULL,
    definition  MEDIUMTEXT   NOT NULL,
    version     BIGINT       NOT NULL,
    PRIMARY KEY (environment, `key`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE audit (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    seq         BIGINT       NOT NULL,
    actor       VARCHAR(191) NOT NULL,
    at          BIGINT       NOT NULL,
    action      VARCHAR(191) NOT NULL,
    environment VARCHAR(191) NULL,
    flag        VARCHAR(191) NULL,
    segment     VARCHAR(191) NULL,
    before_doc  MEDIUMTEXT   NULL,
    after_doc   MEDIUMTEXT   NULL,
    reason      TEXT         NULL,
    INDEX audit_by_flag (flag, id),
    INDEX audit_by_environment (environment, id),
    INDEX audit_by_actor (actor, id),
    INDEX audit_by_time (at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE tokens (
    id          VARCHAR(191) NOT NULL PRIMARY KEY,
    name        VARCHAR(191) NOT NULL,
    role        VARCHAR(16)  NOT NULL,
    environment VARCHAR(191) NULL,
    hash        VARCHAR(191) NOT NULL,
    created_at  BIGINT       NOT NULL,
    revoked_at  BIGINT       NULL,
    UNIQUE INDEX tokens_by_hash (hash),
    INDEX tokens_by_creation (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE change_seq (
    id  BIGINT NOT NULL PRIMARY KEY,
    seq BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT INTO change_seq (id, seq) VALUES (1, 0);
