//! TABLE_MAP_EVENT -> [`TableMap`]: schema, table, and per column its type, type
//! metadata, nullability and (with `binlog_row_metadata=FULL`) name, signedness,
//! charset, ENUM/SET names and primary-key membership.

use super::cursor::Cursor;
use super::error::DecodeError;

/// A column's type as the binlog encodes its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// TINYINT (1 byte).
    Tiny,
    /// SMALLINT (2 bytes).
    Short,
    /// MEDIUMINT (3 bytes).
    Int24,
    /// INT (4 bytes).
    Long,
    /// BIGINT (8 bytes).
    LongLong,
    /// FLOAT (4-byte IEEE).
    Float,
    /// DOUBLE (8-byte IEEE).
    Double,
    /// The NULL type (no bytes).
    Null,
    /// YEAR (1 byte, offset from 1900).
    Year,
    /// DECIMAL/NUMERIC in the packed binary format.
    NewDecimal {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: u8,
    },
    /// DATE (3 bytes).
    Date,
    /// Old TIME (3 bytes, HHMMSS as an integer).
    Time,
    /// TIME(fsp) in the MySQL 5.6 format.
    Time2 {
        /// Fractional digits 0..=6.
        fsp: u8,
    },
    /// Old DATETIME (8 bytes, YYYYMMDDhhmmss as an integer).
    Datetime,
    /// DATETIME(fsp) in the MySQL 5.6 format.
    Datetime2 {
        /// Fractional digits 0..=6.
        fsp: u8,
    },
    /// Old TIMESTAMP (4 bytes, seconds).
    Timestamp,
    /// TIMESTAMP(fsp) in the MySQL 5.6 format.
    Timestamp2 {
        /// Fractional digits 0..=6.
        fsp: u8,
    },
    /// VARCHAR / VARBINARY.
    Varchar {
        /// Declared maximum length in bytes (decides 1- or 2-byte length prefix).
        max_len: u16,
    },
    /// CHAR / BINARY.
    String {
        /// Maximum length in bytes.
        max_len: u16,
    },
    /// ENUM, stored as its 1-based index.
    Enum {
        /// 1 or 2 bytes.
        pack_len: u8,
    },
    /// SET, stored as a bitmask.
    Set {
        /// 1..=8 bytes.
        pack_len: u8,
    },
    /// BIT(n).
    Bit {
        /// Total bits.
        bits: u16,
    },
    /// TINYBLOB..LONGBLOB and TEXT variants.
    Blob {
        /// Length-prefix size, 1..=4.
        len_bytes: u8,
    },
    /// MySQL JSON (binary format); MariaDB's JSON arrives as [`ColumnType::Blob`].
    Json {
        /// Length-prefix size.
        len_bytes: u8,
    },
    /// GEOMETRY (WKB with a 4-byte SRID prefix).
    Geometry {
        /// Length-prefix size.
        len_bytes: u8,
    },
    /// MySQL 9 VECTOR (float32 array).
    Vector {
        /// Length-prefix size.
        len_bytes: u8,
    },
}

/// Type codes as written in TABLE_MAP.
mod code {
    pub const DECIMAL: u8 = 0;
    pub const TINY: u8 = 1;
    pub const SHORT: u8 = 2;
    pub const LONG: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const NULL: u8 = 6;
    pub const TIMESTAMP: u8 = 7;
    pub const LONGLONG: u8 = 8;
    pub const INT24: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const DATETIME: u8 = 12;
    pub const YEAR: u8 = 13;
    pub const NEWDATE: u8 = 14;
    pub const VARCHAR: u8 = 15;
    pub const BIT: u8 = 16;
    pub const TIMESTAMP2: u8 = 17;
    pub const DATETIME2: u8 = 18;
    pub const TIME2: u8 = 19;
    pub const VECTOR: u8 = 242;
    pub const JSON: u8 = 245;
    pub const NEWDECIMAL: u8 = 246;
    pub const ENUM: u8 = 247;
    pub const SET: u8 = 248;
    pub const TINY_BLOB: u8 = 249;
    pub const MEDIUM_BLOB: u8 = 250;
    pub const LONG_BLOB: u8 = 251;
    pub const BLOB: u8 = 252;
    pub const VAR_STRING: u8 = 253;
    pub const STRING: u8 = 254;
    pub const GEOMETRY: u8 = 255;
}

/// The collation id MySQL uses for binary strings.
pub const BINARY_COLLATION: u16 = 63;

/// One column of a mapped table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// How values are encoded.
    pub ty: ColumnType,
    /// Raw type code from the event (for messages).
    pub type_code: u8,
    /// Whether the column may be NULL.
    pub nullable: bool,
    /// Column name (FULL metadata, or filled in from information_schema).
    pub name: Option<String>,
    /// Unsigned numeric column.
    pub unsigned: bool,
    /// Collation id of character and ENUM/SET columns, when known.
    pub collation: Option<u16>,
    /// ENUM or SET member names, when known.
    pub members: Option<Vec<String>>,
    /// Part of the primary key.
    pub primary_key: bool,
    /// The schema declares it JSON (MariaDB stores JSON as LONGTEXT).
    pub json_text: bool,
}

impl Column {
    fn is_numeric(&self) -> bool {
        matches!(
            self.ty,
            ColumnType::Tiny
                | ColumnType::Short
                | ColumnType::Int24
                | ColumnType::Long
                | ColumnType::LongLong
                | ColumnType::Float
                | ColumnType::Double
                | ColumnType::NewDecimal { .. }
                // MySQL counts YEAR as numeric in the signedness bitmap.
                | ColumnType::Year
        )
    }

    fn is_character(&self) -> bool {
        matches!(
            self.ty,
            ColumnType::String { .. }
                | ColumnType::Varchar { .. }
                | ColumnType::Blob { .. }
                // MySQL 9 writes VECTOR (a BLOB underneath) into the charset lists.
                | ColumnType::Vector { .. }
        )
    }

    fn is_enum_or_set(&self) -> bool {
        matches!(self.ty, ColumnType::Enum { .. } | ColumnType::Set { .. })
    }

    /// True when text bytes should be emitted as base64 (binary collation).
    pub fn is_binary(&self) -> bool {
        self.collation == Some(BINARY_COLLATION)
    }
}

/// A decoded TABLE_MAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMap {
    /// Table id this map binds (valid until the next map for the same id).
    pub table_id: u64,
    /// Schema (database) name.
    pub schema: String,
    /// Table name.
    pub table: String,
    /// Columns in table order.
    pub columns: Vec<Column>,
    /// Whether the event carried column names (FULL row metadata).
    pub has_names: bool,
    /// Whether primary key membership is known.
    pub has_primary_key_info: bool,
}

impl TableMap {
    /// Parses a TABLE_MAP body (after the event header, checksum removed).
    pub fn parse(body: &[u8], table_id_len: usize) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(body);
        let table_id = c.uint_le(table_id_len, "table map id")?;
        c.skip(2, "table map flags")?;
        let schema = name(&mut c, "table map schema")?;
        let table = name(&mut c, "table map table")?;
        let count = c.lenenc_len("table map column count")?;
        let types = c.take(count, "table map column types")?;
        let meta_len = c.lenenc_len("table map metadata length")?;
        let mut meta = Cursor::new(c.take(meta_len, "table map metadata")?);
        let nulls = c.take(count.div_ceil(8), "table map null bitmap")?;
        let mut columns = Vec::with_capacity(count);
        for (i, &type_code) in types.iter().enumerate() {
            let ty = column_type(type_code, &mut meta).map_err(|e| match e {
                DecodeError::Malformed { detail, .. } => DecodeError::malformed(
                    "table map",
                    format!("{schema}.{table} column {i}: {detail}"),
                ),
                other => other,
            })?;
            columns.push(Column {
                ty,
                type_code,
                nullable: nulls[i / 8] & (1 << (i % 8)) != 0,
                name: None,
                unsigned: false,
                collation: None,
                members: None,
                primary_key: false,
                json_text: false,
            });
        }
        let mut map = TableMap {
            table_id,
            schema,
            table,
            columns,
            has_names: false,
            has_primary_key_info: false,
        };
        map.apply_optional_metadata(c.rest())?;
        Ok(map)
    }

    /// `schema.table`.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    fn apply_optional_metadata(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        let mut c = Cursor::new(bytes);
        while c.remaining() > 0 {
            let field = c.u8("optional metadata type")?;
            let value = c.lenenc_bytes("optional metadata field")?;
            let mut v = Cursor::new(value);
            match field {
                1 => self.apply_signedness(value),
                2 => {
                    let chars = indexes(&self.columns, Column::is_character);
                    apply_default_charset(&mut self.columns, &chars, &mut v)?;
                }
                3 => {
                    let chars = indexes(&self.columns, Column::is_character);
                    apply_column_charsets(&mut self.columns, &chars, &mut v)?;
                }
                4 => {
                    for col in &mut self.columns {
                        if v.remaining() == 0 {
                            break;
                        }
                        let n = v.lenenc_bytes("column name")?;
                        col.name = Some(String::from_utf8_lossy(n).into_owned());
                    }
                    self.has_names = true;
                }
                5 | 6 => {
                    let wanted = |c: &Column| match field {
                        5 => matches!(c.ty, ColumnType::Set { .. }),
                        _ => matches!(c.ty, ColumnType::Enum { .. }),
                    };
                    for i in indexes(&self.columns, wanted) {
                        if v.remaining() == 0 {
                            break;
                        }
                        let n = v.lenenc("enum/set member count")?;
                        let mut members = Vec::with_capacity(n.min(4096) as usize);
                        for _ in 0..n {
                            let m = v.lenenc_bytes("enum/set member")?;
                            members.push(String::from_utf8_lossy(m).into_owned());
                        }
                        self.columns[i].members = Some(members);
                    }
                }
                8 => {
                    while v.remaining() > 0 {
                        let i = v.lenenc("primary key column")?;
                        self.mark_primary_key(i)?;
                    }
                    self.has_primary_key_info = true;
                }
                9 => {
                    while v.remaining() > 0 {
                        let i = v.lenenc("primary key column")?;
                        v.lenenc("primary key prefix")?;
                        self.mark_primary_key(i)?;
                    }
                    self.has_primary_key_info = true;
                }
                10 => {
                    let enums = indexes(&self.columns, Column::is_enum_or_set);
                    apply_default_charset(&mut self.columns, &enums, &mut v)?;
                }
                11 => {
                    let enums = indexes(&self.columns, Column::is_enum_or_set);
                    apply_column_charsets(&mut self.columns, &enums, &mut v)?;
                }
                // Geometry subtypes, visibility, vector dimensions: not needed for values.
                _ => {}
            }
        }
        Ok(())
    }

    fn apply_signedness(&mut self, bits: &[u8]) {
        let numeric = indexes(&self.columns, Column::is_numeric);
        for (n, i) in numeric.into_iter().enumerate() {
            // Most significant bit first.
            let set = bits.get(n / 8).is_some_and(|b| b & (0x80 >> (n % 8)) != 0);
            self.columns[i].unsigned = set;
        }
    }

    fn mark_primary_key(&mut self, index: u64) -> Result<(), DecodeError> {
        let col = usize::try_from(index)
            .ok()
            .and_then(|i| self.columns.get_mut(i))
            .ok_or_else(|| {
                DecodeError::malformed(
                    "table map",
                    format!("primary key column {index} does not exist"),
                )
            })?;
        col.primary_key = true;
        Ok(())
    }
}

fn name(c: &mut Cursor<'_>, what: &'static str) -> Result<String, DecodeError> {
    let len = usize::from(c.u8(what)?);
    let bytes = c.take(len, what)?;
    c.skip(1, what)?;
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

fn indexes(columns: &[Column], keep: impl Fn(&Column) -> bool) -> Vec<usize> {
    columns
        .iter()
        .enumerate()
        .filter(|(_, c)| keep(c))
        .map(|(i, _)| i)
        .collect()
}

/// DEFAULT_CHARSET: the default collation, then (index among `subset`, collation) pairs.
fn apply_default_charset(
    columns: &mut [Column],
    subset: &[usize],
    v: &mut Cursor<'_>,
) -> Result<(), DecodeError> {
    let default = v.lenenc("default charset")? as u16;
    for &i in subset {
        columns[i].collation = Some(default);
    }
    while v.remaining() > 0 {
        let n = v.lenenc("charset column")?;
        let collation = v.lenenc("charset")? as u16;
        let i = usize::try_from(n)
            .ok()
            .and_then(|n| subset.get(n))
            .ok_or_else(|| {
                DecodeError::malformed("table map", format!("charset for column {n} out of range"))
            })?;
        columns[*i].collation = Some(collation);
    }
    Ok(())
}

/// COLUMN_CHARSET: one collation per column of `subset`.
fn apply_column_charsets(
    columns: &mut [Column],
    subset: &[usize],
    v: &mut Cursor<'_>,
) -> Result<(), DecodeError> {
    for &i in subset {
        if v.remaining() == 0 {
            break;
        }
        columns[i].collation = Some(v.lenenc("column charset")? as u16);
    }
    Ok(())
}

/// Reads a column's type metadata and resolves the real type.
fn column_type(type_code: u8, meta: &mut Cursor<'_>) -> Result<ColumnType, DecodeError> {
    use ColumnType as T;
    let fsp = |meta: &mut Cursor<'_>| -> Result<u8, DecodeError> {
        let fsp = meta.u8("column metadata")?;
        if fsp > 6 {
            return Err(DecodeError::malformed(
                "column metadata",
                format!("fractional precision {fsp} > 6"),
            ));
        }
        Ok(fsp)
    };
    let len_bytes = |meta: &mut Cursor<'_>| -> Result<u8, DecodeError> {
        let n = meta.u8("column metadata")?;
        if !(1..=4).contains(&n) {
            return Err(DecodeError::malformed(
                "column metadata",
                format!("length size {n} is not 1..=4"),
            ));
        }
        Ok(n)
    };
    Ok(match type_code {
        code::TINY => T::Tiny,
        code::SHORT => T::Short,
        code::INT24 => T::Int24,
        code::LONG => T::Long,
        code::LONGLONG => T::LongLong,
        code::FLOAT | code::DOUBLE => {
            meta.u8("column metadata")?;
            if type_code == code::FLOAT {
                T::Float
            } else {
                T::Double
            }
        }
        code::NULL => T::Null,
        code::YEAR => T::Year,
        code::NEWDECIMAL => {
            let precision = meta.u8("column metadata")?;
            let scale = meta.u8("column metadata")?;
            if precision == 0 || precision > 65 || scale > 30 || scale > precision {
                return Err(DecodeError::malformed(
                    "column metadata",
                    format!("DECIMAL({precision},{scale}) is not a valid precision/scale"),
                ));
            }
            T::NewDecimal { precision, scale }
        }
        code::DATE | code::NEWDATE => T::Date,
        code::TIME => T::Time,
        code::TIME2 => T::Time2 { fsp: fsp(meta)? },
        code::DATETIME => T::Datetime,
        code::DATETIME2 => T::Datetime2 { fsp: fsp(meta)? },
        code::TIMESTAMP => T::Timestamp,
        code::TIMESTAMP2 => T::Timestamp2 { fsp: fsp(meta)? },
        code::VARCHAR | code::VAR_STRING => T::Varchar {
            max_len: meta.u16("column metadata")?,
        },
        code::BIT => {
            let partial = u16::from(meta.u8("column metadata")?);
            let bytes = u16::from(meta.u8("column metadata")?);
            T::Bit {
                bits: bytes * 8 + partial,
            }
        }
        code::TINY_BLOB | code::MEDIUM_BLOB | code::LONG_BLOB | code::BLOB => T::Blob {
            len_bytes: len_bytes(meta)?,
        },
        code::JSON => T::Json {
            len_bytes: len_bytes(meta)?,
        },
        code::GEOMETRY => T::Geometry {
            len_bytes: len_bytes(meta)?,
        },
        code::VECTOR => T::Vector {
            len_bytes: len_bytes(meta)?,
        },
        code::STRING | code::ENUM | code::SET => {
            let b = meta.take(2, "column metadata")?;
            let (real, low) = (b[0], b[1]);
            if real == 0 {
                // Very old servers: no real type; treat as CHAR of `low` bytes.
                return Ok(T::String {
                    max_len: u16::from(low),
                });
            }
            // CHAR lengths above 255 borrow two bits of the type byte (inverted).
            match real | 0x30 {
                code::ENUM => T::Enum { pack_len: low },
                code::SET => T::Set { pack_len: low },
                code::STRING => T::String {
                    max_len: (u16::from((real & 0x30) ^ 0x30) << 4) | u16::from(low),
                },
                other => {
                    return Err(DecodeError::malformed(
                        "column metadata",
                        format!("CHAR column with real type {other}"),
                    ))
                }
            }
        }
        code::DECIMAL | 20..=241 | 243 | 244 => {
            return Err(DecodeError::malformed(
                "column type",
                format!("type code {type_code} cannot appear in a row event"),
            ))
        }
    })
}
