//! Which tables a DDL statement from the binlog names, sans-I/O: ALTER, RENAME,
//! TRUNCATE, DROP and CREATE TABLE (… LIKE …). The text is the server's, so it is
//! untrusted bytes for this parser (fuzz target `ddl_statement`); anything it does
//! not recognise names no table.

/// The tables `sql` changes or creates, as (schema, table); names without a
/// schema take `default_schema`. For RENAME both the old and the new name are
/// listed, in the statement's order.
pub fn tables(sql: &str, default_schema: &str) -> Vec<(String, String)> {
    let tokens = tokenize(sql);
    let mut t = Tokens {
        tokens: &tokens,
        at: 0,
    };
    let mut out = Vec::new();
    let name = |t: &mut Tokens<'_>, out: &mut Vec<(String, String)>| {
        if let Some(n) = t.name(default_schema) {
            out.push(n);
            true
        } else {
            false
        }
    };
    match t.word().as_deref() {
        Some("ALTER") => {
            t.skip_words(&["ONLINE", "IGNORE"]);
            if !t.keyword("TABLE") {
                return out;
            }
            t.skip_if_exists();
            name(&mut t, &mut out);
            // `ALTER TABLE a RENAME [TO|AS] b` (possibly after other clauses).
            while let Some(tok) = t.next() {
                if matches!(tok, Token::Word(w) if w.eq_ignore_ascii_case("RENAME")) {
                    t.skip_words(&["TO", "AS"]);
                    if t.peek_word().as_deref() == Some("COLUMN")
                        || t.peek_word().as_deref() == Some("INDEX")
                        || t.peek_word().as_deref() == Some("KEY")
                    {
                        continue;
                    }
                    name(&mut t, &mut out);
                }
            }
        }
        Some("RENAME") => {
            if !t.keyword("TABLE") && !t.keyword("TABLES") {
                return out;
            }
            loop {
                t.skip_if_exists();
                if !name(&mut t, &mut out) {
                    break;
                }
                t.skip_words(&["WAIT", "NOWAIT"]);
                if !t.keyword("TO") || !name(&mut t, &mut out) || !t.comma() {
                    break;
                }
            }
        }
        Some("TRUNCATE") => {
            t.keyword("TABLE");
            name(&mut t, &mut out);
        }
        Some("DROP") => {
            t.skip_words(&["TEMPORARY"]);
            if !t.keyword("TABLE") && !t.keyword("TABLES") {
                return out;
            }
            t.skip_if_exists();
            while name(&mut t, &mut out) && t.comma() {}
        }
        Some("CREATE") => {
            t.skip_words(&["OR", "REPLACE", "TEMPORARY"]);
            if !t.keyword("TABLE") {
                return out;
            }
            t.skip_if_exists();
            name(&mut t, &mut out);
        }
        _ => {}
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word or a quoted identifier (quotes removed).
    Word(String),
    /// Quoted with backticks: never a keyword.
    Quoted(String),
    Dot,
    Comma,
    Other,
}

/// Splits SQL into tokens, dropping comments (MariaDB/MySQL executable comments
/// `/*! … */` keep their text).
fn tokenize(sql: &str) -> Vec<Token> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'/' if b.get(i + 1) == Some(&b'*') => {
                if matches!(b.get(i + 2), Some(b'!' | b'M')) {
                    // Executable comment: its text counts; skip the marker and
                    // an optional version number.
                    i += 3;
                    if b.get(i - 1) == Some(&b'M') && b.get(i) == Some(&b'!') {
                        i += 1;
                    }
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                } else {
                    match sql.get(i + 2..).and_then(|rest| rest.find("*/")) {
                        Some(end) => i += 2 + end + 2,
                        None => break,
                    }
                }
            }
            b'*' if b.get(i + 1) == Some(&b'/') => i += 2,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-')
                && b.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'`' | b'"' => {
                let quote = c;
                let mut name = Vec::new();
                i += 1;
                while i < b.len() {
                    if b[i] == quote {
                        if b.get(i + 1) == Some(&quote) {
                            name.push(quote);
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    name.push(b[i]);
                    i += 1;
                }
                out.push(Token::Quoted(String::from_utf8_lossy(&name).into_owned()));
            }
            b'\'' => {
                i += 1;
                while i < b.len() {
                    match b[i] {
                        b'\\' => i += 2,
                        b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
                        b'\'' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                out.push(Token::Other);
            }
            b'.' => {
                out.push(Token::Dot);
                i += 1;
            }
            b',' => {
                out.push(Token::Comma);
                i += 1;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                out.push(Token::Word(
                    String::from_utf8_lossy(&b[start..i]).into_owned(),
                ));
            }
            _ => {
                out.push(Token::Other);
                i += 1;
            }
        }
    }
    out
}

struct Tokens<'a> {
    tokens: &'a [Token],
    at: usize,
}

impl Tokens<'_> {
    fn next(&mut self) -> Option<&Token> {
        let t = self.tokens.get(self.at)?;
        self.at += 1;
        Some(t)
    }

    /// The next token as an upper-case bare word, consumed.
    fn word(&mut self) -> Option<String> {
        let w = self.peek_word()?;
        self.at += 1;
        Some(w)
    }

    fn peek_word(&self) -> Option<String> {
        match self.tokens.get(self.at)? {
            Token::Word(w) => Some(w.to_ascii_uppercase()),
            _ => None,
        }
    }

    /// Consumes `kw` if it is next.
    fn keyword(&mut self, kw: &str) -> bool {
        if self.peek_word().as_deref() == Some(kw) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn skip_words(&mut self, words: &[&str]) {
        while self
            .peek_word()
            .is_some_and(|w| words.contains(&w.as_str()))
        {
            self.at += 1;
        }
    }

    fn skip_if_exists(&mut self) {
        let save = self.at;
        if self.keyword("IF") {
            self.keyword("NOT");
            if !self.keyword("EXISTS") {
                self.at = save;
            }
        }
    }

    fn comma(&mut self) -> bool {
        if self.tokens.get(self.at) == Some(&Token::Comma) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<String> {
        match self.tokens.get(self.at)? {
            Token::Word(w) | Token::Quoted(w) => {
                self.at += 1;
                Some(w.clone())
            }
            _ => None,
        }
    }

    /// `name` or `schema.name`.
    fn name(&mut self, default_schema: &str) -> Option<(String, String)> {
        let first = self.ident()?;
        if self.tokens.get(self.at) == Some(&Token::Dot) {
            self.at += 1;
            let second = self.ident()?;
            Some((first, second))
        } else {
            Some((default_schema.to_owned(), first))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(sql: &str) -> Vec<String> {
        tables(sql, "db")
            .into_iter()
            .map(|(s, t)| format!("{s}.{t}"))
            .collect()
    }

    #[test]
    fn statements_name_their_tables() {
        assert_eq!(t("ALTER TABLE items ADD COLUMN x INT"), ["db.items"]);
        assert_eq!(
            t("alter online table `shop`.`it``ems` drop x"),
            ["shop.it`ems"]
        );
        assert_eq!(t("ALTER TABLE a RENAME TO shop.b"), ["db.a", "shop.b"]);
        assert_eq!(t("ALTER TABLE a RENAME COLUMN x TO y"), ["db.a"]);
        assert_eq!(
            t("RENAME TABLE a TO b, s.c TO s.d"),
            ["db.a", "db.b", "s.c", "s.d"]
        );
        assert_eq!(t("TRUNCATE TABLE s.x"), ["s.x"]);
        assert_eq!(t("TRUNCATE x"), ["db.x"]);
        assert_eq!(
            t("DROP TABLE IF EXISTS `a`,b /* generated by server */"),
            ["db.a", "db.b"]
        );
        assert_eq!(t("CREATE TABLE IF NOT EXISTS s.n LIKE s.o"), ["s.n"]);
        assert_eq!(t("CREATE OR REPLACE TABLE n (id INT)"), ["db.n"]);
        assert_eq!(t("/* c */ ALTER TABLE x ENGINE=InnoDB"), ["db.x"]);
        assert!(t("CREATE DATABASE x").is_empty());
        assert!(t("CREATE INDEX i ON x (a)").is_empty());
        assert!(t("DROP VIEW v").is_empty());
        assert!(t("").is_empty());
        assert!(t("ALTER TABLE").is_empty());
        assert!(t("RENAME TABLE a TO").len() == 1);
    }

    #[test]
    fn hostile_text_names_nothing_and_never_panics() {
        for sql in [
            "ALTER TABLE `unterminated",
            "DROP TABLE a,,,,",
            "/* never closed ALTER TABLE x",
            "CREATE TABLE 'str'",
            "ALTER TABLE \u{feff}ü.ö ADD x INT",
            "RENAME TABLE a TO b,",
            "ALTER TABLE x.",
        ] {
            let _ = tables(sql, "db");
        }
        assert_eq!(t("ALTER TABLE ü.ö ADD x INT"), ["ü.ö"]);
    }
}
