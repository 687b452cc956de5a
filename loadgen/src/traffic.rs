//! The synthetic traffic shape shared by `master` and `binlog`: which row changes,
//! on which tables and keys, in which transactions. Every change carries a
//! per-table sequence number (1, 2, 3, ... with no gaps) so a sink can tell lost,
//! duplicated and reordered deliveries apart.

use std::time::Duration;

/// What kind of change a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// WRITE_ROWS.
    Insert,
    /// UPDATE_ROWS (before and after image).
    Update,
    /// DELETE_ROWS.
    Delete,
}

/// The traffic options.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Rows per second (0 = as fast as possible).
    pub rate: u64,
    /// Rows per transaction.
    pub txn_rows: u32,
    /// Tables `loadgen.t0` .. `loadgen.t{n-1}`.
    pub tables: u32,
    /// Key space per table: keys 1..=keys.
    pub keys: u64,
    /// Bytes of the `payload` column.
    pub row_bytes: usize,
    /// Weights of insert, update, delete.
    pub mix: [u32; 3],
    /// Stop after this many rows.
    pub rows: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Seed of the key / kind choices.
    pub seed: u64,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            rate: 1000,
            txn_rows: 1,
            tables: 1,
            keys: 10_000,
            row_bytes: 64,
            mix: [1, 0, 0],
            rows: None,
            duration: None,
            seed: 1,
        }
    }
}

impl Shape {
    /// Parses `--mix insert:update:delete` weights, e.g. `70:20:10`.
    pub fn parse_mix(text: &str) -> Result<[u32; 3], String> {
        let parts: Vec<&str> = text.split(':').collect();
        let bad =
            || format!("--mix {text:?}: want three weights insert:update:delete, e.g. 70:20:10");
        if parts.len() != 3 {
            return Err(bad());
        }
        let mut mix = [0u32; 3];
        for (m, p) in mix.iter_mut().zip(parts) {
            *m = p.trim().parse().map_err(|_| bad())?;
        }
        if mix.iter().all(|&m| m == 0) {
            return Err(bad());
        }
        Ok(mix)
    }
}

/// One row change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Table index.
    pub table: u32,
    /// What happens.
    pub kind: Kind,
    /// Primary key.
    pub key: u64,
    /// Sequence number within the table, from 1.
    pub seq: u64,
}

/// Produces changes by the shape, deterministically from the seed.
pub struct Generator {
    shape: Shape,
    rng: u64,
    seqs: Vec<u64>,
    made: u64,
}

impl Generator {
    /// A generator for `shape`.
    pub fn new(shape: &Shape) -> Self {
        Generator {
            rng: shape.seed.max(1),
            seqs: vec![0; shape.tables.max(1) as usize],
            shape: shape.clone(),
            made: 0,
        }
    }

    /// Rows made so far.
    pub fn made(&self) -> u64 {
        self.made
    }

    /// Whether `--rows` is reached.
    pub fn done(&self) -> bool {
        self.shape.rows.is_some_and(|n| self.made >= n)
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: fast, and reproducible from the seed.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The next transaction's changes (fewer than `txn_rows` at the `--rows` end).
    pub fn transaction(&mut self, out: &mut Vec<Change>) {
        out.clear();
        let total: u32 = self.shape.mix.iter().sum();
        for _ in 0..self.shape.txn_rows.max(1) {
            if self.done() {
                return;
            }
            let table = (self.next_random() % u64::from(self.shape.tables.max(1))) as u32;
            let key = 1 + self.next_random() % self.shape.keys.max(1);
            let pick = (self.next_random() % u64::from(total.max(1))) as u32;
            let kind = if pick < self.shape.mix[0] {
                Kind::Insert
            } else if pick < self.shape.mix[0] + self.shape.mix[1] {
                Kind::Update
            } else {
                Kind::Delete
            };
            let seq = &mut self.seqs[table as usize];
            *seq += 1;
            out.push(Change {
                table,
                kind,
                key,
                seq: *seq,
            });
            self.made += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_gapless_per_table_and_stop_at_rows() {
        let shape = Shape {
            tables: 3,
            txn_rows: 7,
            rows: Some(100),
            mix: [1, 1, 1],
            ..Shape::default()
        };
        let mut g = Generator::new(&shape);
        let mut all = Vec::new();
        let mut txn = Vec::new();
        loop {
            g.transaction(&mut txn);
            if txn.is_empty() {
                break;
            }
            all.extend(txn.iter().cloned());
        }
        assert_eq!(all.len(), 100);
        for t in 0..3 {
            let seqs: Vec<u64> = all.iter().filter(|c| c.table == t).map(|c| c.seq).collect();
            assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        }
        assert!(all.iter().any(|c| c.kind == Kind::Delete));
        assert!(all.iter().all(|c| (1..=shape.keys).contains(&c.key)));
    }

    #[test]
    fn mix_parsing() {
        assert_eq!(Shape::parse_mix("70:20:10").unwrap(), [70, 20, 10]);
        assert!(Shape::parse_mix("1:2").is_err());
        assert!(Shape::parse_mix("0:0:0").is_err());
        assert!(Shape::parse_mix("a:1:1").is_err());
    }
}
