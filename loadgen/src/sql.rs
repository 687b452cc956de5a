//! `loadgen sql`: the master's traffic as real statements on a real server, for
//! commit-to-webhook runs. Several connections, each on its own thread, paced
//! open-loop; every statement changes exactly one row (so every seq reaches the
//! binlog): inserts take keys that do not exist, updates keys that do. Keys are
//! split between connections, so no two connections touch one row. A deleted
//! row's binlog image is the row as stored, so before its transaction the row is
//! given the delete's own seq and send time with `sql_log_bin = 0` (not logged:
//! needs SUPER or BINLOG ADMIN); the DELETE then carries them like any change.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rowhook::config::{DatabaseConfig, Flavor, TlsMode};
use rowhook::mysql::Connection;

use crate::traffic::{Kind, Shape};

/// Options of `loadgen sql`.
#[derive(Debug, Clone)]
pub struct SqlArgs {
    /// `mysql://user:password@host:port`.
    pub url: String,
    /// The traffic.
    pub shape: Shape,
    /// Connections.
    pub connections: u32,
}

fn database(url: &str) -> Result<DatabaseConfig, String> {
    let u = url::Url::parse(url).map_err(|e| format!("--mysql {url:?}: {e}"))?;
    if u.scheme() != "mysql" {
        return Err(format!(
            "--mysql {url:?}: want mysql://user:password@host:port"
        ));
    }
    Ok(DatabaseConfig {
        host: u.host_str().unwrap_or("127.0.0.1").to_owned(),
        port: u.port().unwrap_or(3306),
        user: if u.username().is_empty() {
            "root".to_owned()
        } else {
            u.username().to_owned()
        },
        password: u.password().unwrap_or("").to_owned(),
        database: None,
        server_id: 0,
        charset: "utf8mb4".to_owned(),
        tls: TlsMode::Disabled,
        flavor: Flavor::Auto,
    })
}

/// Per-table sequence counters shared by the connections.
struct Seqs(Vec<AtomicU64>);

/// Runs the traffic; prints a JSON summary.
pub fn run(args: &SqlArgs) -> Result<(), String> {
    let db = database(&args.url)?;
    let shape = args.shape.clone();
    let conns = args.connections.max(1);
    // Tables are created fresh so sequences start at 1 and key sets start empty.
    {
        let (db, shape) = (db.clone(), shape.clone());
        on_executor(move || async move {
            let mut c = connect(&db).await?;
            c.exec("CREATE DATABASE IF NOT EXISTS loadgen")
                .await
                .map_err(|e| e.to_string())?;
            for t in 0..shape.tables {
                c.exec(&format!("DROP TABLE IF EXISTS loadgen.t{t}"))
                    .await
                    .map_err(|e| e.to_string())?;
                c.exec(&format!(
                    "CREATE TABLE loadgen.t{t} (id BIGINT PRIMARY KEY, seq BIGINT, sent_ns BIGINT, payload VARCHAR({}))",
                    shape.row_bytes.max(1)
                ))
                .await
                .map_err(|e| e.to_string())?;
            }
            Ok(())
        })?;
    }
    let seqs = Arc::new(Seqs(
        (0..shape.tables.max(1))
            .map(|_| AtomicU64::new(0))
            .collect(),
    ));
    let started = Instant::now();
    let start_ns = crate::unix_nanos();
    let mut threads = Vec::new();
    for index in 0..conns {
        let (db, shape, seqs) = (db.clone(), shape.clone(), seqs.clone());
        threads.push(std::thread::spawn(move || {
            on_executor(move || drive(db, shape, seqs, index, conns, started, start_ns))
        }));
    }
    let mut rows = 0u64;
    let mut worst = Duration::ZERO;
    for t in threads {
        let (n, lag) = t
            .join()
            .map_err(|_| "a connection thread panicked".to_owned())??;
        rows += n;
        worst = worst.max(lag);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"rows\":{rows},\"seconds\":{secs:.3},\"rows_per_s\":{:.0},\"connections\":{conns},\"worst_lag_ms\":{:.3}}}",
        rows as f64 / secs.max(1e-9),
        worst.as_secs_f64() * 1000.0
    );
    Ok(())
}

fn on_executor<T, F, G>(make: G) -> Result<T, String>
where
    G: FnOnce() -> F,
    F: std::future::Future<Output = Result<T, String>>,
{
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(256 << 10)
        .make()
        .map_err(|e| format!("cannot start an executor: {e}"))?;
    ex.run(make())
}

async fn connect(db: &DatabaseConfig) -> Result<Connection, String> {
    Connection::connect(db, 1 << 24, Duration::from_secs(10))
        .await
        .map_err(|e| format!("cannot connect to {}:{}: {e}", db.host, db.port))
}

/// One connection's share: rate / connections rows/s, keys ≡ index (mod conns).
async fn drive(
    db: DatabaseConfig,
    shape: Shape,
    seqs: Arc<Seqs>,
    index: u32,
    conns: u32,
    started: Instant,
    start_ns: u64,
) -> Result<(u64, Duration), String> {
    let mut c = connect(&db).await?;
    let tables = shape.tables.max(1);
    let mut live: Vec<BTreeSet<u64>> = (0..tables).map(|_| BTreeSet::new()).collect();
    let mut rng = shape
        .seed
        .max(1)
        .wrapping_add(u64::from(index) * 0x9e37_79b9);
    let mut next = move || {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let total: u32 = shape.mix.iter().sum::<u32>().max(1);
    let share_rows = shape
        .rows
        .map(|n| n / u64::from(conns) + u64::from(u64::from(index) < n % u64::from(conns)));
    let rate = shape.rate as f64 / f64::from(conns);
    let payload = "q".repeat(shape.row_bytes);
    let (mut made, mut worst) = (0u64, Duration::ZERO);
    loop {
        let due = if rate > 0.0 {
            Duration::from_secs_f64(made as f64 / rate)
        } else {
            started.elapsed()
        };
        if shape.duration.is_some_and(|d| due >= d) || share_rows.is_some_and(|n| made >= n) {
            return Ok((made, worst));
        }
        let now = started.elapsed();
        if due > now {
            glommio::timer::sleep(due - now).await;
        } else {
            worst = worst.max(now - due);
        }
        let sent = start_ns + due.as_nanos() as u64;
        let n = shape.txn_rows.max(1);
        // Plan the transaction first: deletes need their rows prepared before it.
        let mut plan = Vec::with_capacity(n as usize);
        let mut touched = BTreeSet::new();
        for _ in 0..n {
            if share_rows.is_some_and(|limit| made + plan.len() as u64 >= limit) {
                break;
            }
            let t = (next() % u64::from(tables)) as usize;
            let pick = (next() % u64::from(total)) as u32;
            let mut kind = if pick < shape.mix[0] {
                Kind::Insert
            } else if pick < shape.mix[0] + shape.mix[1] {
                Kind::Update
            } else {
                Kind::Delete
            };
            // This connection's keys: index, index + conns, index + 2·conns, ...
            let slots = (shape.keys / u64::from(conns)).max(1);
            // A delete needs a live row this transaction has not touched (its
            // prepared seq would be overwritten).
            let deletable: Vec<u64> = live[t]
                .iter()
                .filter(|k| !touched.contains(&(t, **k)))
                .copied()
                .collect();
            if live[t].is_empty() {
                kind = Kind::Insert;
            } else if live[t].len() as u64 >= slots && kind == Kind::Insert {
                kind = Kind::Update;
            }
            if kind == Kind::Delete && deletable.is_empty() {
                kind = Kind::Update;
            }
            let key = match kind {
                Kind::Insert => loop {
                    let k = 1 + u64::from(index) + (next() % slots) * u64::from(conns);
                    if !live[t].contains(&k) {
                        break k;
                    }
                },
                Kind::Update => {
                    let i = (next() % live[t].len() as u64) as usize;
                    *live[t].iter().nth(i).unwrap_or(&1)
                }
                Kind::Delete => deletable[(next() % deletable.len() as u64) as usize],
            };
            match kind {
                Kind::Insert => live[t].insert(key),
                Kind::Delete => live[t].remove(&key),
                Kind::Update => true,
            };
            touched.insert((t, key));
            let seq = seqs.0[t].fetch_add(1, Ordering::Relaxed) + 1;
            plan.push((t, kind, key, seq));
        }
        if plan.iter().any(|p| p.1 == Kind::Delete) {
            c.exec("SET SESSION sql_log_bin = 0").await.map_err(|e| {
                format!("deletes need SET sql_log_bin (SUPER or BINLOG ADMIN), to give the row its seq unlogged first; without it use --mix I:U:0: {e}")
            })?;
            for (t, _, key, seq) in plan.iter().filter(|p| p.1 == Kind::Delete) {
                let sql = format!(
                    "UPDATE loadgen.t{t} SET seq = {seq}, sent_ns = {sent} WHERE id = {key}"
                );
                c.exec(&sql).await.map_err(|e| format!("{sql}: {e}"))?;
            }
            c.exec("SET SESSION sql_log_bin = 1")
                .await
                .map_err(|e| e.to_string())?;
        }
        if n > 1 {
            c.exec("BEGIN").await.map_err(|e| e.to_string())?;
        }
        for (t, kind, key, seq) in plan {
            let sql = match kind {
                Kind::Insert => {
                    format!("INSERT INTO loadgen.t{t} VALUES ({key}, {seq}, {sent}, '{payload}')")
                }
                Kind::Update => format!(
                    "UPDATE loadgen.t{t} SET seq = {seq}, sent_ns = {sent} WHERE id = {key}"
                ),
                Kind::Delete => format!("DELETE FROM loadgen.t{t} WHERE id = {key}"),
            };
            c.exec(&sql).await.map_err(|e| format!("{sql}: {e}"))?;
            made += 1;
        }
        if n > 1 {
            c.exec("COMMIT").await.map_err(|e| e.to_string())?;
        }
    }
}
