//! The table of every column type (SPEC section 5) and rows for it, shared by the
//! decoder tests and the snapshot tests.

/// `shop.all_types` (every type), a composite-key table and a table without a key.
pub const SCHEMA: &str = "
CREATE DATABASE shop;
CREATE TABLE shop.all_types (
  id INT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
  i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  f FLOAT, d DOUBLE, dec1 DECIMAL(10,2), dec2 DECIMAL(65,30), dec3 DECIMAL(5,0),
  dt DATE, tm TIME, tm3 TIME(3), dtm DATETIME, dtm6 DATETIME(6), ts TIMESTAMP(3) NULL, yr YEAR,
  c CHAR(10), vc VARCHAR(300), tx TEXT, lat VARCHAR(20) CHARACTER SET latin1,
  bn BINARY(4), vb VARBINARY(10), bl BLOB,
  js JSON, en ENUM('small','medium','large'), st SET('a','b','c','d'), bt BIT(10), geo GEOMETRY,
  tn1 TIME(1), tn2 TIME(2), tn4 TIME(4)
) DEFAULT CHARSET utf8mb4;
CREATE TABLE shop.`order-2024` (a INT, b VARCHAR(10), v INT, PRIMARY KEY (a, b));
CREATE TABLE shop.nokey (v INT);
";

/// Rows for [`SCHEMA`]: every type at its edges, then an update, a delete, and
/// rows of the other two tables.
pub const ROWS: &str = "
SET time_zone = '+00:00';
SET sql_mode = '';
INSERT INTO shop.all_types VALUES (
  1, -128, 255, -32768, -8388608, 16777215,
  -2147483648, 4294967295, -9223372036854775808, 18446744073709551615,
  1.5, -2.25, 12.50, '-12345678901234567890123456789012345.123456789012345678901234567890', 99999,
  '2026-01-31', '-838:59:59', '12:34:56.789', '2026-01-31 13:45:00', '2026-01-31 13:45:00.123456',
  '2026-01-31 13:45:00.500', 2026,
  'chars', 'utf8mb4 😀 \"quoted\" \\\\ back', 'a text\nwith newline', 'café',
  x'00010203', x'ff00', x'deadbeef',
  '{\"a\": 1, \"b\": [true, null]}', 'medium', 'a,c', b'1010101010', ST_GeomFromText('POINT(1 2)'),
  '-00:00:01.5', '-12:34:56.07', '-838:59:58.9999'
);
INSERT INTO shop.all_types (id, dt, dtm) VALUES (2, '0000-00-00', '0000-00-00 00:00:00');
UPDATE shop.all_types SET vc = 'changed', dec1 = -0.05 WHERE id = 1;
DELETE FROM shop.all_types WHERE id = 2;
INSERT INTO shop.`order-2024` VALUES (7, 'x', 1);
UPDATE shop.`order-2024` SET v = 2 WHERE a = 7;
INSERT INTO shop.nokey VALUES (5);
";

/// ENUM/SET labels a MINIMAL TABLE_MAP lacks: quotes, an empty label, the invalid
/// index 0, SET with all and no bits, and labels changed by DDL mid-stream.
pub const LABELS: &str = "
SET sql_mode = '';
CREATE TABLE shop.labels (id INT PRIMARY KEY,
  e ENUM('a','it''s','','back\\\\slash','c,d'), s SET('x','y','z'));
INSERT INTO shop.labels VALUES (1, 'it''s', 'x,y,z'), (2, '', ''), (3, 'bogus', 'y');
INSERT INTO shop.labels VALUES (4, 'back\\\\slash', 'z'), (5, 'c,d', NULL);
ALTER TABLE shop.labels MODIFY e ENUM('a','it''s','','back\\\\slash','c,d','new'),
  MODIFY s SET('x','y','z','w');
INSERT INTO shop.labels VALUES (6, 'new', 'w,x');
UPDATE shop.labels SET e = 'a', s = 'w' WHERE id = 1;
";
