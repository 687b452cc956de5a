//! What the stream knows of the source transaction it is reading, for the
//! payloads that name it: the envelope's `transaction: {id, seq}`, and under
//! `delivery: transaction` each task's rows gathered into one POST per
//! transaction — in parts of at most `max_transaction_events` rows (or
//! [`PART_BYTES`]), so memory stays bounded however large the transaction.

use crate::binlog::write::{escaped, rfc3339, string, uint};

/// Bytes of rendered rows one part holds at most, whatever
/// `max_transaction_events` allows: a part is in memory whole until sent.
pub const PART_BYTES: usize = 16 << 20;

/// The transaction being read.
#[derive(Debug, Default)]
pub struct OpenTxn {
    /// Its ordinal in the stream (`Merge::txn`); `id` and the counts belong to it.
    ordinal: Option<u64>,
    id: String,
    /// Per task slot: rows of this transaction routed to it so far.
    seq: Vec<u32>,
    /// Slots whose count is not zero.
    touched: Vec<usize>,
    /// Per task slot under `delivery: transaction`: the part being filled.
    parts: Vec<Option<Part>>,
}

/// The rows of one task's part of a transaction.
#[derive(Debug, Default)]
struct Part {
    /// From 1.
    number: u32,
    /// The rows' payloads, comma-separated.
    events: Vec<u8>,
    count: u32,
    /// Rows per table: (schema, table, count).
    tables: Vec<(String, String, u32)>,
}

/// A part ready to send: the body and the length of its id.
#[derive(Debug)]
pub struct Finished {
    /// The task's slot.
    pub task: usize,
    /// `{"id":…,"transaction":{…},"events":[…]}`.
    pub body: Vec<u8>,
    /// Length of the escaped id 7 bytes into the body.
    pub id_len: usize,
    /// Rows in it.
    pub rows: u32,
}

impl OpenTxn {
    /// Counts a row of transaction `ordinal` for `task` and returns the
    /// transaction's id and the row's number among the task's rows in it (from
    /// 1). `id` is asked once per transaction.
    pub fn next_row(
        &mut self,
        ordinal: u64,
        task: usize,
        id: impl FnOnce() -> String,
    ) -> (&str, u32) {
        if self.ordinal != Some(ordinal) {
            for t in self.touched.drain(..) {
                if let Some(n) = self.seq.get_mut(t) {
                    *n = 0;
                }
            }
            // Parts are sent at every boundary; one left here belongs to a
            // transaction the server never finished (a restart cut it) and is
            // sent again whole when the stream reads it again.
            self.parts.iter_mut().for_each(|p| *p = None);
            self.id = id();
            self.ordinal = Some(ordinal);
        }
        if self.seq.len() <= task {
            self.seq.resize(task + 1, 0);
        }
        if self.seq[task] == 0 {
            self.touched.push(task);
        }
        self.seq[task] = self.seq[task].saturating_add(1);
        (&self.id, self.seq[task])
    }

    /// Adds a row's payload to `task`'s part. When the part already held `max`
    /// rows (or [`PART_BYTES`]) it is finished first, as not the last, and
    /// returned: a part is sent only once the next row shows there is more, so
    /// the last part always says `last: true`.
    pub fn add(
        &mut self,
        task: usize,
        (schema, table): (&str, &str),
        payload: &[u8],
        max: u32,
    ) -> Option<Finished> {
        if self.parts.len() <= task {
            self.parts.resize_with(task + 1, || None);
        }
        let full = self.parts[task]
            .as_ref()
            .is_some_and(|p| p.count >= max.max(1) || p.events.len() >= PART_BYTES);
        let finished = if full {
            let body = self.finish(task, None);
            if let Some(p) = &mut self.parts[task] {
                p.number += 1;
                p.events.clear();
                p.count = 0;
                p.tables.clear();
            }
            body
        } else {
            None
        };
        let part = self.parts[task].get_or_insert_with(|| Part {
            number: 1,
            ..Part::default()
        });
        if part.count > 0 {
            part.events.push(b',');
        }
        part.events.extend_from_slice(payload);
        part.count += 1;
        match part
            .tables
            .iter_mut()
            .find(|(s, t, _)| s == schema && t == table)
        {
            Some((_, _, n)) => *n += 1,
            None => part.tables.push((schema.to_owned(), table.to_owned(), 1)),
        }
        finished
    }

    /// The transaction ended (its XID, when it had one, and the commit's
    /// timestamp): every task's open part, finished as the last.
    pub fn end(&mut self, xid: Option<u64>, commit_time: u32) -> Vec<Finished> {
        let mut out = Vec::new();
        for task in 0..self.parts.len() {
            if let Some(f) = self.finish(task, Some((xid, commit_time))) {
                out.push(f);
            }
            self.parts[task] = None;
        }
        out
    }

    /// The body of `task`'s part; `end` = the transaction's (xid, commit time)
    /// when this is its last part.
    fn finish(&self, task: usize, end: Option<(Option<u64>, u32)>) -> Option<Finished> {
        let part = self.parts.get(task)?.as_ref()?;
        let mut body = Vec::with_capacity(part.events.len() + 256);
        body.extend_from_slice(b"{\"id\":\"txn:");
        let id_start = body.len() - 4;
        escaped(&mut body, self.id.as_bytes());
        body.push(b':');
        uint(&mut body, u64::from(part.number));
        let id_len = body.len() - id_start;
        body.extend_from_slice(b"\",\"transaction\":{\"id\":");
        string(&mut body, &self.id);
        body.extend_from_slice(b",\"xid\":");
        match end {
            Some((Some(xid), _)) => uint(&mut body, xid),
            _ => body.extend_from_slice(b"null"),
        }
        body.extend_from_slice(b",\"commit_time\":");
        match end {
            Some((_, time)) => rfc3339(&mut body, time),
            None => body.extend_from_slice(b"null"),
        }
        body.extend_from_slice(b",\"events\":");
        uint(&mut body, u64::from(part.count));
        body.extend_from_slice(b",\"tables\":{");
        for (n, (schema, table, count)) in part.tables.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            string(&mut body, &format!("{schema}.{table}"));
            body.push(b':');
            uint(&mut body, u64::from(*count));
        }
        body.extend_from_slice(b"},\"part\":");
        uint(&mut body, u64::from(part.number));
        body.extend_from_slice(b",\"parts\":");
        match end {
            Some(_) => uint(&mut body, u64::from(part.number)),
            None => body.extend_from_slice(b"null"),
        }
        body.extend_from_slice(b",\"last\":");
        body.extend_from_slice(if end.is_some() { b"true" } else { b"false" });
        body.extend_from_slice(b"},\"events\":[");
        body.extend_from_slice(&part.events);
        body.extend_from_slice(b"]}");
        Some(Finished {
            task,
            body,
            id_len,
            rows: part.count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(f: &Finished) -> serde_json::Value {
        serde_json::from_slice(&f.body).unwrap()
    }

    #[test]
    fn rows_are_numbered_per_task_and_transaction() {
        let mut t = OpenTxn::default();
        assert_eq!(t.next_row(7, 0, || "0-1-5".into()), ("0-1-5", 1));
        assert_eq!(t.next_row(7, 2, || unreachable!()), ("0-1-5", 1));
        assert_eq!(t.next_row(7, 0, || unreachable!()), ("0-1-5", 2));
        assert_eq!(
            t.next_row(8, 0, || "b.000001:400".into()),
            ("b.000001:400", 1)
        );
        assert_eq!(t.next_row(8, 2, || unreachable!()), ("b.000001:400", 1));
    }

    #[test]
    fn a_transaction_is_one_body_or_parts_whose_last_says_so() {
        let mut t = OpenTxn::default();
        t.next_row(1, 0, || "0-1-9".into());
        for i in 0..5 {
            let row = format!("{{\"n\":{i}}}");
            let table = if i % 2 == 0 { "a" } else { "b" };
            let out = t.add(0, ("s", table), row.as_bytes(), 2);
            // Parts go when the next row shows there is more: after rows 2 and 4.
            assert_eq!(out.is_some(), i == 2 || i == 4, "row {i}");
            if let Some(f) = out {
                let v = json(&f);
                assert_eq!(v["transaction"]["last"], false);
                assert_eq!(v["transaction"]["parts"], serde_json::Value::Null);
                assert_eq!(v["transaction"]["xid"], serde_json::Value::Null);
                assert_eq!(v["transaction"]["events"], 2);
                assert_eq!(v["events"].as_array().unwrap().len(), 2);
                assert_eq!(v["events"][0]["n"], i - 2);
                let id = &f.body[7..7 + f.id_len];
                assert_eq!(id, format!("txn:0-1-9:{}", i / 2).as_bytes());
            }
        }
        let last = t.end(Some(42), 1_700_000_000);
        assert_eq!(last.len(), 1);
        let v = json(&last[0]);
        assert_eq!(v["id"], "txn:0-1-9:3");
        assert_eq!(v["transaction"]["id"], "0-1-9");
        assert_eq!(v["transaction"]["xid"], 42);
        assert_eq!(v["transaction"]["commit_time"], "2023-11-14T22:13:20Z");
        assert_eq!(v["transaction"]["part"], 3);
        assert_eq!(v["transaction"]["parts"], 3);
        assert_eq!(v["transaction"]["last"], true);
        assert_eq!(v["transaction"]["tables"]["s.a"], 1);
        assert_eq!(v["events"][0]["n"], 4);
        assert!(t.end(None, 0).is_empty(), "nothing is left open");
    }

    #[test]
    fn tasks_get_their_own_bodies_and_table_counts() {
        let mut t = OpenTxn::default();
        t.next_row(3, 1, || "f.000002:4".into());
        assert!(t.add(1, ("s", "x"), b"{}", 100).is_none());
        assert!(t.add(3, ("s", "y"), b"{}", 100).is_none());
        assert!(t.add(1, ("s", "y"), b"{}", 100).is_none());
        let bodies = t.end(None, 0);
        assert_eq!(bodies.len(), 2);
        let one = json(&bodies[0]);
        assert_eq!(bodies[0].task, 1);
        assert_eq!(one["transaction"]["events"], 2);
        assert_eq!(
            one["transaction"]["tables"],
            serde_json::json!({"s.x": 1, "s.y": 1})
        );
        assert_eq!(one["transaction"]["xid"], serde_json::Value::Null);
        assert_eq!(bodies[1].task, 3);
    }
}
