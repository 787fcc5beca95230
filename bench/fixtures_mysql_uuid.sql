-- lineitem_uuid: MariaDB's lineitem keyed by a UUID (MariaDB's UUID type, UUID() values) instead of an
-- integer: the table with no integer key that keyset chunks (chunk_by_key) are for. Built from lineitem.
DROP TABLE IF EXISTS lineitem_uuid;
CREATE TABLE lineitem_uuid (id UUID NOT NULL PRIMARY KEY) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
SELECT UUID() AS id, l.* FROM lineitem AS l;
ANALYZE TABLE lineitem_uuid
