-- The lineitem-like table (TPC-H shape, 16 columns) in MariaDB, :rows rows, deterministic.
-- Uses MariaDB's sequence engine (seq_1_to_N).
DROP TABLE IF EXISTS lineitem;
CREATE TABLE lineitem (
    l_orderkey      BIGINT        NOT NULL PRIMARY KEY,
    l_partkey       INT           NOT NULL,
    l_suppkey       INT           NOT NULL,
    l_linenumber    INT           NOT NULL,
    l_quantity      DECIMAL(15,2) NOT NULL,
    l_extendedprice DECIMAL(15,2) NOT NULL,
    l_discount      DECIMAL(15,2) NOT NULL,
    l_tax           DECIMAL(15,2) NOT NULL,
    l_returnflag    CHAR(1)       NOT NULL,
    l_linestatus    CHAR(1)       NOT NULL,
    l_shipdate      DATE          NOT NULL,
    l_commitdate    DATE          NOT NULL,
    l_receiptdate   DATE          NOT NULL,
    l_shipinstruct  CHAR(25)      NOT NULL,
    l_shipmode      CHAR(10)      NOT NULL,
    l_comment       VARCHAR(44)   NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT INTO lineitem
SELECT
    seq,
    FLOOR(RAND(seq) * 200000),
    FLOOR(RAND(seq + 1) * 10000),
    1 + (seq % 7),
    1 + FLOOR(RAND(seq + 2) * 49),
    ROUND(RAND(seq + 3) * 100000, 2),
    ROUND(RAND(seq + 4) * 0.1, 2),
    ROUND(RAND(seq + 5) * 0.08, 2),
    ELT(1 + (seq % 3), 'A', 'N', 'R'),
    ELT(1 + (seq % 2), 'O', 'F'),
    DATE '1992-01-01' + INTERVAL FLOOR(RAND(seq + 6) * 2500) DAY,
    DATE '1992-01-01' + INTERVAL FLOOR(RAND(seq + 7) * 2500) DAY,
    DATE '1992-01-01' + INTERVAL FLOOR(RAND(seq + 8) * 2500) DAY,
    ELT(1 + (seq % 4), 'DELIVER IN PERSON', 'COLLECT COD', 'NONE', 'TAKE BACK RETURN'),
    ELT(1 + (seq % 7), 'AIR', 'MAIL', 'SHIP', 'TRUCK', 'RAIL', 'FOB', 'REG AIR'),
    SUBSTR(MD5(seq), 1, 10 + (seq % 30))
FROM seq_1_to_:rows;
ANALYZE TABLE lineitem
