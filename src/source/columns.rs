//! Column facts the binlog may lack, read from information_schema over a second
//! connection: names, primary key and ENUM/SET labels (MINIMAL row metadata) and
//! which MariaDB LONGTEXT columns are really JSON. Cached per table; DDL clears the
//! cache.

use std::collections::HashMap;

use crate::binlog::table_map::ColumnType;
use crate::binlog::TableMap;
use crate::mysql::{Connection, MysqlError};

/// What information_schema says about one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// Part of the primary key.
    pub primary_key: bool,
    /// Declared JSON (MySQL type json, or MariaDB's json_valid() CHECK).
    pub json: bool,
    /// ENUM or SET labels in declaration order, from `COLUMN_TYPE`.
    pub members: Option<Vec<String>>,
    /// The SQL type as declared (`COLUMN_TYPE`, e.g. `varchar(40)`).
    pub sql_type: String,
    /// information_schema's `DATA_TYPE` (e.g. `varchar`).
    pub data_type: String,
}

/// Column facts per `(schema, table)`.
#[derive(Debug, Default)]
pub struct SchemaCache {
    tables: HashMap<(String, String), Vec<ColumnInfo>>,
}

impl SchemaCache {
    /// Cached columns of `schema.table`.
    pub fn get(&self, schema: &str, table: &str) -> Option<&[ColumnInfo]> {
        self.tables
            .get(&(schema.to_owned(), table.to_owned()))
            .map(Vec::as_slice)
    }

    /// Remembers the columns of `schema.table`.
    pub fn insert(&mut self, schema: &str, table: &str, columns: Vec<ColumnInfo>) {
        self.tables
            .insert((schema.to_owned(), table.to_owned()), columns);
    }

    /// Forgets everything (after DDL).
    pub fn clear(&mut self) {
        self.tables.clear();
    }
}

/// Whether a statement may change table definitions.
pub fn is_ddl(sql: &str) -> bool {
    let word = sql.split_whitespace().next().unwrap_or("");
    ["ALTER", "CREATE", "DROP", "RENAME", "TRUNCATE"]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k))
}

/// Reads the columns of `schema.table` in table order.
pub async fn lookup(
    conn: &mut Connection,
    schema: &str,
    table: &str,
) -> Result<Vec<ColumnInfo>, MysqlError> {
    let (s, t) = (quote(schema), quote(table));
    let columns = conn
        .query(&format!(
            "SELECT COLUMN_NAME, COLUMN_KEY, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = {s} AND TABLE_NAME = {t} ORDER BY ORDINAL_POSITION"
        ))
        .await?;
    // MariaDB: JSON is LONGTEXT plus CHECK (json_valid(`col`)); the table may not exist there on MySQL.
    let checks = match conn
        .query(&format!(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = {s} AND TABLE_NAME = {t}"
        ))
        .await
    {
        Ok(rows) => rows,
        Err(MysqlError::Server { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    let json_checked: Vec<String> = checks
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .filter_map(|clause| {
            let inner = clause
                .trim()
                .strip_prefix("json_valid(")?
                .strip_suffix(')')?;
            Some(inner.trim().trim_matches('`').to_owned())
        })
        .collect();
    Ok(columns
        .into_iter()
        .map(|r| {
            let name = r.first().cloned().flatten().unwrap_or_default();
            ColumnInfo {
                primary_key: r.get(1).cloned().flatten().as_deref() == Some("PRI"),
                json: r
                    .get(2)
                    .cloned()
                    .flatten()
                    .is_some_and(|t| t.eq_ignore_ascii_case("json"))
                    || json_checked.contains(&name),
                members: r.get(3).cloned().flatten().and_then(|t| members(&t)),
                sql_type: r.get(3).cloned().flatten().unwrap_or_default(),
                data_type: r.get(2).cloned().flatten().unwrap_or_default(),
                name,
            }
        })
        .collect())
}

/// Fills what `table` lacks from `columns`. Returns false (and changes nothing)
/// when the column counts differ: the table changed since the event was written,
/// so names could land on the wrong values.
pub fn apply(table: &mut TableMap, columns: &[ColumnInfo]) -> bool {
    if columns.len() != table.columns.len()
        || table
            .columns
            .iter()
            .zip(columns)
            .any(|(col, info)| !same_kind(&col.ty, &info.data_type))
    {
        return false;
    }
    let names_missing = !table.has_names;
    let keys_missing = !table.has_primary_key_info;
    for (col, info) in table.columns.iter_mut().zip(columns) {
        if names_missing {
            col.name = Some(info.name.clone());
        }
        if keys_missing {
            col.primary_key = info.primary_key;
        }
        col.json_text = info.json;
        if col.members.is_none()
            && matches!(col.ty, ColumnType::Enum { .. } | ColumnType::Set { .. })
        {
            col.members.clone_from(&info.members);
        }
    }
    table.has_names = true;
    table.has_primary_key_info = true;
    true
}

/// Whether a binlog column type can be a column information_schema declares as
/// `data_type`. Types rowhook does not know either way (MariaDB's `uuid`,
/// `inet6`, geometry, …) count as the same: only a known mismatch says the table
/// changed since the event was written.
pub fn same_kind(ty: &ColumnType, data_type: &str) -> bool {
    let declared = data_type.to_ascii_lowercase();
    let family = match declared.as_str() {
        "tinyint" => "tiny",
        "smallint" => "short",
        "mediumint" => "int24",
        "int" | "integer" => "long",
        "bigint" => "longlong",
        "float" => "float",
        "double" | "real" => "double",
        "decimal" | "numeric" => "decimal",
        "year" => "year",
        "date" => "date",
        "time" => "time",
        "datetime" => "datetime",
        "timestamp" => "timestamp",
        "varchar" | "varbinary" => "varchar",
        "char" | "binary" => "char",
        "bit" => "bit",
        "tinyblob" | "blob" | "mediumblob" | "longblob" | "tinytext" | "text" | "mediumtext"
        | "longtext" => "blob",
        _ => return true,
    };
    let kind = match ty {
        ColumnType::Tiny => "tiny",
        ColumnType::Short => "short",
        ColumnType::Int24 => "int24",
        ColumnType::Long => "long",
        ColumnType::LongLong => "longlong",
        ColumnType::Float => "float",
        ColumnType::Double => "double",
        ColumnType::NewDecimal { .. } => "decimal",
        ColumnType::Year => "year",
        ColumnType::Date => "date",
        ColumnType::Time | ColumnType::Time2 { .. } => "time",
        ColumnType::Datetime | ColumnType::Datetime2 { .. } => "datetime",
        ColumnType::Timestamp | ColumnType::Timestamp2 { .. } => "timestamp",
        ColumnType::Varchar { .. } => "varchar",
        ColumnType::String { .. } => "char",
        ColumnType::Bit { .. } => "bit",
        ColumnType::Blob { .. } => "blob",
        _ => return true,
    };
    kind == family
}

/// The labels of an `enum('a','b')` or `set(...)` column type as information_schema
/// prints it (a quote inside a label doubled, a backslash escaped); `None` for any
/// other type or text that does not parse.
pub fn members(column_type: &str) -> Option<Vec<String>> {
    let t = column_type.trim();
    let open = t.find('(')?;
    let kind = &t[..open];
    if !kind.eq_ignore_ascii_case("enum") && !kind.eq_ignore_ascii_case("set") {
        return None;
    }
    let mut chars = t[open + 1..].chars();
    let mut labels = Vec::new();
    loop {
        if chars.next()? != '\'' {
            return None;
        }
        let mut label = String::new();
        loop {
            match chars.next()? {
                '\'' => {
                    let rest = chars.clone().next();
                    if rest == Some('\'') {
                        chars.next();
                        label.push('\'');
                    } else {
                        break;
                    }
                }
                '\\' => label.push(match chars.next()? {
                    '0' => '\0',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'Z' => '\x1a',
                    'b' => '\x08',
                    other => other,
                }),
                c => label.push(c),
            }
        }
        labels.push(label);
        match chars.next()? {
            ',' => continue,
            ')' if chars.as_str().trim().is_empty() => return Some(labels),
            _ => return None,
        }
    }
}

/// A string literal for SQL (names come from the binlog, so they are quoted).
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binlog_types_match_their_declared_kinds_and_unknowns_never_mismatch() {
        assert!(same_kind(&ColumnType::Long, "int"));
        assert!(same_kind(&ColumnType::LongLong, "BIGINT"));
        assert!(!same_kind(&ColumnType::Long, "bigint"));
        assert!(!same_kind(&ColumnType::Long, "varchar"));
        assert!(same_kind(&ColumnType::Blob { len_bytes: 4 }, "longtext"));
        assert!(same_kind(&ColumnType::Tiny, "uuid"), "unknown to rowhook");
        assert!(same_kind(&ColumnType::Year, "enum"));
    }

    #[test]
    fn ddl_and_quoting() {
        assert!(is_ddl("  alter table x add c int"));
        assert!(is_ddl("CREATE TABLE t (a int)"));
        assert!(!is_ddl("BEGIN"));
        assert!(!is_ddl("COMMIT"));
        assert_eq!(quote("o'k\\"), "'o''k\\\\'");
    }

    #[test]
    fn enum_and_set_labels_from_column_type() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            (
                "enum('small','medium','large')",
                Some(&["small", "medium", "large"]),
            ),
            ("set('a','b','c','d')", Some(&["a", "b", "c", "d"])),
            ("ENUM('it''s','','c,d')", Some(&["it's", "", "c,d"])),
            ("enum('x\\\\y','tab\\there')", Some(&["x\\y", "tab\there"])),
            ("enum('')", Some(&[""])),
            ("enum('ü','😀')", Some(&["ü", "😀"])),
            ("enum('a',)", None),
            ("enum('a'", None),
            ("enum('a')x", None),
            ("enum(a)", None),
            ("int(11)", None),
            ("varchar(10)", None),
            ("", None),
        ];
        for (text, want) in cases {
            let got = members(text);
            let want: Option<Vec<String>> =
                want.map(|w| w.iter().map(|s| (*s).to_owned()).collect());
            assert_eq!(got, want, "{text}");
        }
    }
}
