-- A lineitem-like table (TPC-H shape, 16 columns) of :rows rows, deterministic.
-- psql -v rows=5000000 -f bench/fixtures_lineitem.sql
SELECT setseed(0.17);
DROP TABLE IF EXISTS lineitem;
CREATE TABLE lineitem (
    l_orderkey      bigint        NOT NULL,
    l_partkey       integer       NOT NULL,
    l_suppkey       integer       NOT NULL,
    l_linenumber    integer       NOT NULL,
    l_quantity      numeric(15,2) NOT NULL,
    l_extendedprice numeric(15,2) NOT NULL,
    l_discount      numeric(15,2) NOT NULL,
    l_tax           numeric(15,2) NOT NULL,
    l_returnflag    char(1)       NOT NULL,
    l_linestatus    char(1)       NOT NULL,
    l_shipdate      date          NOT NULL,
    l_commitdate    date          NOT NULL,
    l_receiptdate   date          NOT NULL,
    l_shipinstruct  char(25)      NOT NULL,
    l_shipmode      char(10)      NOT NULL,
    l_comment       varchar(44)   NOT NULL
);
INSERT INTO lineitem
SELECT
    i,
    (random() * 200000)::int,
    (random() * 10000)::int,
    1 + (i % 7),
    (1 + (random() * 49)::int)::numeric(15,2),
    round((random() * 100000)::numeric, 2),
    round((random() * 0.1)::numeric, 2),
    round((random() * 0.08)::numeric, 2),
    (ARRAY['A','N','R'])[1 + (i % 3)],
    (ARRAY['O','F'])[1 + (i % 2)],
    date '1992-01-01' + (random() * 2500)::int,
    date '1992-01-01' + (random() * 2500)::int,
    date '1992-01-01' + (random() * 2500)::int,
    (ARRAY['DELIVER IN PERSON','COLLECT COD','NONE','TAKE BACK RETURN'])[1 + (i % 4)],
    (ARRAY['AIR','MAIL','SHIP','TRUCK','RAIL','FOB','REG AIR'])[1 + (i % 7)],
    substr(md5(i::text), 1, 10 + (i % 30))
FROM generate_series(1, :rows) AS i;
ALTER TABLE lineitem ADD PRIMARY KEY (l_orderkey);
VACUUM (FREEZE, ANALYZE) lineitem;
CHECKPOINT;
