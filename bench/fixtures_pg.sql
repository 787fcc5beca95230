-- Benchmark fixtures for PostgreSQL: content_items (:content_rows rows x 20 mixed columns; 2 M rows
-- are ~950 MiB) and events (:event_rows rows x 4 columns). Deterministic (setseed).
-- psql -v content_rows=2000000 -v event_rows=10000000 -f bench/fixtures_pg.sql
SELECT setseed(0.42);
DROP TABLE IF EXISTS content_items;
DROP TABLE IF EXISTS events;

BEGIN;
CREATE TABLE content_items (
    id            bigint        NOT NULL,
    author_id     integer       NOT NULL,
    view_count    bigint,                 -- ~10% NULL
    price         numeric(12,2),          -- ~10% NULL
    score         double precision NOT NULL,
    is_published  boolean,                -- ~10% NULL
    title         text          NOT NULL, -- ~20 chars
    body          text,                   -- ~200 chars, ~10% NULL
    slug          varchar(64)   NOT NULL,
    created_at    timestamp     NOT NULL,
    updated_at    timestamptz,            -- ~10% NULL
    publish_date  date,                   -- ~10% NULL
    guid          uuid          NOT NULL,
    meta          jsonb,                  -- small object, ~10% NULL
    priority      smallint      NOT NULL,
    rating        real,                   -- ~10% NULL
    checksum      bytea         NOT NULL, -- 32 bytes
    category_id   integer       NOT NULL,
    lang          text          NOT NULL, -- low cardinality
    word_count    integer                 -- ~10% NULL
);

INSERT INTO content_items
SELECT
    i,
    (random() * 50000)::int,
    CASE WHEN random() < 0.1 THEN NULL ELSE (random() * 1e7)::bigint END,
    CASE WHEN random() < 0.1 THEN NULL ELSE round((random() * 10000)::numeric, 2) END,
    random() * 100,
    CASE WHEN random() < 0.1 THEN NULL ELSE random() < 0.7 END,
    initcap(translate(substr(md5(i::text || 't'), 1, 20), '0123456789abcdef', 'etaoin shrdlucmw')),
    CASE WHEN random() < 0.1 THEN NULL ELSE
        translate(md5(i::text) || md5(i::text || 'a') || md5(i::text || 'b') || md5(i::text || 'c')
                  || md5(i::text || 'd') || md5(i::text || 'e') || substr(md5(i::text || 'f'), 1, 8),
                  '0123456789abcdef', 'etaoin shrdlucmw') END,
    'post-' || i || '-' || substr(md5(i::text || 's'), 1, 24),
    timestamp '2019-01-01' + random() * interval '2000 days',
    CASE WHEN random() < 0.1 THEN NULL ELSE timestamptz '2019-01-01 00:00:00+00' + random() * interval '2000 days' END,
    CASE WHEN random() < 0.1 THEN NULL ELSE date '2019-01-01' + (random() * 2000)::int END,
    gen_random_uuid(),
    CASE WHEN random() < 0.1 THEN NULL ELSE
        jsonb_build_object('src', (ARRAY['web','api','import','mobile'])[1 + (i % 4)],
                           'v', (i % 7),
                           'tags', jsonb_build_array('t' || (i % 13), 't' || (i % 17)),
                           'ok', (i % 2 = 0)) END,
    (random() * 10)::smallint,
    CASE WHEN random() < 0.1 THEN NULL ELSE (random() * 5)::real END,
    sha256(int8send(i)),
    (random() * 200)::int,
    (ARRAY['en','de','fr','es','it','pt','nl','ja'])[1 + (random() * 7)::int],
    CASE WHEN random() < 0.1 THEN NULL ELSE (random() * 3000)::int END
FROM generate_series(1, :content_rows) AS i;
COMMIT;
ALTER TABLE content_items ADD PRIMARY KEY (id);

BEGIN;
CREATE TABLE events (
    id       bigint NOT NULL,
    user_id  integer NOT NULL,
    ts       timestamptz NOT NULL,
    value    double precision NOT NULL
);
INSERT INTO events
SELECT i, (random() * 1000000)::int,
       timestamptz '2023-01-01 00:00:00+00' + i * interval '3 seconds' + random() * interval '2 seconds',
       random() * 1000
FROM generate_series(1, :event_rows) AS i;
COMMIT;
ALTER TABLE events ADD PRIMARY KEY (id);

VACUUM (FREEZE, ANALYZE) content_items;
VACUUM (FREEZE, ANALYZE) events;
CHECKPOINT;
