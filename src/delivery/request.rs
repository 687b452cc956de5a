//! One attempt's request bytes: the task's pre-built head, then the per-attempt
//! headers (id, signature) and the body.

use super::plan::TaskPlan;
use super::sign::signature;

/// Writes the complete request for one attempt into `out` (cleared first).
/// `now` is the attempt's Unix time, signed into `webhook-timestamp`; `epoch`
/// (with `ha`, else 0) is sent as `webhook-epoch`.
pub fn write(out: &mut Vec<u8>, task: &TaskPlan, id: &[u8], body: &[u8], now: u64, epoch: u64) {
    out.clear();
    out.extend_from_slice(&task.head);
    out.extend_from_slice(b"webhook-id: ");
    out.extend_from_slice(id);
    out.extend_from_slice(b"\r\n");
    if epoch != 0 {
        out.extend_from_slice(b"webhook-epoch: ");
        out.extend_from_slice(itoa::Buffer::new().format(epoch).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(key) = &task.secret {
        let mut ts = itoa::Buffer::new();
        out.extend_from_slice(b"webhook-timestamp: ");
        out.extend_from_slice(ts.format(now).as_bytes());
        out.extend_from_slice(b"\r\nwebhook-signature: ");
        out.extend_from_slice(signature(key, id, now, body).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut len = itoa::Buffer::new();
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(len.format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// The body of a batch: the events' objects as a JSON array, in order.
pub fn batch_body(out: &mut Vec<u8>, bodies: impl Iterator<Item = impl AsRef<[u8]>>) {
    out.clear();
    out.push(b'[');
    for (i, b) in bodies.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b.as_ref());
    }
    out.push(b']');
}

/// A batch's `webhook-id`: the first event's id and the count, so a retry of the
/// same batch carries the same id.
pub fn batch_id(first: &[u8], count: usize) -> Vec<u8> {
    let mut id = first.to_vec();
    id.push(b'+');
    id.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
    id
}
