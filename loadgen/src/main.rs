//! loadgen: the instrument rowhook's performance and fault claims are measured with
//! (SPEC section 8): a fake MySQL 8 primary streaming synthetic row changes, the
//! same stream as a binlog file, and a webhook sink.

mod auth;
mod binlog;
mod blast;
mod jsonb;
mod master;
mod paced;
mod sink;
mod sql;
mod traffic;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Load generator for rowhook.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A fake MySQL 8 primary streaming synthetic row changes to replicas.
    Master(MasterCli),
    /// Writes the master's stream to a binlog file (for decode benchmarks).
    Binlog(BinlogCli),
    /// A webhook receiver that verifies, times and (with --print) shows what it gets.
    Sink(sink::SinkArgs),
    /// The same traffic as real INSERT / UPDATE statements on a real server.
    Sql(SqlCli),
    /// The HTTP ceiling: keep-alive POSTs of webhook-shaped bodies as fast as a receiver answers.
    Blast(blast::BlastArgs),
    /// Prints the version.
    Version,
}

/// The traffic shape (shared by master and binlog).
#[derive(Debug, Args)]
struct ShapeCli {
    /// Rows per second, paced open-loop (0 = as fast as possible).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Rows per transaction.
    #[arg(long, default_value_t = 1)]
    txn_rows: u32,
    /// Tables loadgen.t0 .. t{N-1}.
    #[arg(long, default_value_t = 1)]
    tables: u32,
    /// Key space per table (updates and deletes hit keys 1..=N).
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Bytes of each row's payload column.
    #[arg(long, default_value_t = 64)]
    row_bytes: usize,
    /// Weights insert:update:delete.
    #[arg(long, default_value = "1:0:0")]
    mix: String,
    /// Stop after this many rows.
    #[arg(long)]
    rows: Option<u64>,
    /// Stop after this long (e.g. 30s, 2m).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Seed of the key and kind choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Which server the stream imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Flavor {
    /// mysql_native_password with any credentials, no GTIDs, no JSON (the bench's stream).
    Basic,
    /// MySQL 8.0 defaults: caching_sha2_password, GTIDs, a JSON column per table.
    Mysql8,
}

#[derive(Debug, Args)]
struct FlavorCli {
    /// What the primary imitates.
    #[arg(long, value_enum, default_value = "basic")]
    flavor: Flavor,
    /// (mysql8) Compress each transaction, as binlog_transaction_compression=ON does.
    #[arg(long)]
    compress: bool,
    /// (mysql8) Log updates as partial JSON updates (PARTIAL_UPDATE_ROWS), as
    /// binlog_row_value_options=PARTIAL_JSON does.
    #[arg(long)]
    partial_json: bool,
    /// (mysql8) UUID of the GTIDs written (default: this primary's server_uuid). Give a
    /// second primary the first one's to imitate a failover pair.
    #[arg(long)]
    gtid_source: Option<String>,
}

impl FlavorCli {
    fn mysql8(&self, server_id: u32) -> Result<Option<binlog::Mysql8>, String> {
        if self.flavor == Flavor::Basic {
            if self.compress || self.partial_json || self.gtid_source.is_some() {
                return Err(
                    "--compress, --partial-json and --gtid-source need --flavor mysql8".into(),
                );
            }
            return Ok(None);
        }
        let text = self
            .gtid_source
            .clone()
            .unwrap_or_else(|| master::server_uuid(server_id));
        let source = binlog::parse_uuid(&text)
            .ok_or_else(|| format!("--gtid-source {text:?} is not a UUID"))?;
        Ok(Some(binlog::Mysql8 {
            source,
            compress: self.compress,
            partial_json: self.partial_json,
        }))
    }
}

#[derive(Debug, Args)]
struct MasterCli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3399")]
    listen: String,
    #[command(flatten)]
    shape: ShapeCli,
    #[command(flatten)]
    flavor: FlavorCli,
    /// (mysql8) The password every user must give.
    #[arg(long, default_value = "rowhook")]
    password: String,
    /// (mysql8) cold: the first login of a user needs full authentication (as after
    /// a server restart); warm: every user is in the cache (fast path at once).
    #[arg(long, value_parser = ["cold", "warm"], default_value = "cold")]
    auth_cache: String,
    /// (mysql8) RSA private key (PEM) for the password exchange; generated when unset.
    #[arg(long)]
    rsa_key: Option<PathBuf>,
    /// (mysql8) Certificate chain (PEM) to offer TLS with.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// (mysql8) Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Directory for the binlog files (default: a fresh one under the temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Rotate to a new binlog file after this many bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_binlog_size: u64,
    /// The primary's server id.
    #[arg(long, default_value_t = 1)]
    server_id: u32,
    /// Start the traffic at once instead of when the first replica starts dumping.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, Args)]
struct BinlogCli {
    /// The binlog file to write.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    shape: ShapeCli,
    #[command(flatten)]
    flavor: FlavorCli,
}

#[derive(Debug, Args)]
struct SqlCli {
    /// The server: mysql://user:password@host:port (tables go to schema `loadgen`, recreated).
    #[arg(long)]
    mysql: String,
    /// Connections, each paced at rate / connections.
    #[arg(long, default_value_t = 4)]
    connections: u32,
    #[command(flatten)]
    shape: ShapeCli,
}

/// Nanoseconds since the epoch (CLOCK_REALTIME).
pub fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Sleeps until `at`. No spinning: a pacer shares the machine with what
/// it measures, and a yield loop there costs rowhook a core.
pub fn sleep_until(at: std::time::Instant) {
    let left = at.saturating_duration_since(std::time::Instant::now());
    if !left.is_zero() {
        std::thread::sleep(left);
    }
}

/// Asks for exact timer wake-ups on this thread: the default 50 µs slack would
/// bunch sends due 100 µs apart.
pub fn precise_timers() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches no memory.
    let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

/// A histogram of lateness in µs, 1 µs .. 1 h. Fixed bounds: `saturating_record`
/// clamps instead of growing an auto-resizing one, which would cap it at 2 ms.
pub fn lag_histogram() -> Result<hdrhistogram::Histogram<u64>, String> {
    hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).map_err(|e| e.to_string())
}

/// Parses `500ms`, `30s`, `2m`, `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: f64 = n
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{text:?}: unit must be ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn shape(cli: &ShapeCli) -> Result<traffic::Shape, String> {
    if cli.row_bytes > 16_383 {
        return Err("--row-bytes: at most 16383 (a VARCHAR of utf8mb4 within 64 KiB)".into());
    }
    Ok(traffic::Shape {
        rate: cli.rate,
        txn_rows: cli.txn_rows.max(1),
        tables: cli.tables.max(1),
        keys: cli.keys.max(1),
        row_bytes: cli.row_bytes,
        mix: traffic::Shape::parse_mix(&cli.mix)?,
        rows: cli.rows,
        duration: cli.duration,
        seed: cli.seed,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Version => {
            println!("loadgen {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Sink(s) => sink::run(&s),
        Command::Master(m) => master_args(m).and_then(|args| master::run(&args)),
        Command::Sql(q) => shape(&q.shape).and_then(|shape| {
            sql::run(&sql::SqlArgs {
                url: q.mysql,
                shape,
                connections: q.connections,
            })
        }),
        Command::Blast(b) => blast::run(&b),
        Command::Binlog(b) => {
            shape(&b.shape).and_then(|shape| write_binlog(&b.out, &shape, b.flavor.mysql8(1)?))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(1)
        }
    }
}

fn master_args(m: MasterCli) -> Result<master::MasterArgs, String> {
    let mysql8 = m.flavor.mysql8(m.server_id)?;
    let auth = match &mysql8 {
        None => None,
        Some(_) => {
            let started = std::time::Instant::now();
            let tls = m.tls_cert.as_deref().zip(m.tls_key.as_deref());
            let auth = auth::Auth::new(
                &m.password,
                m.auth_cache == "warm",
                m.rsa_key.as_deref(),
                tls,
            )?;
            if m.rsa_key.is_none() {
                eprintln!(
                    "loadgen master: generated an RSA key in {:.1} s (--rsa-key skips this)",
                    started.elapsed().as_secs_f64()
                );
            }
            Some(std::sync::Arc::new(auth))
        }
    };
    Ok(master::MasterArgs {
        listen: m.listen,
        shape: shape(&m.shape)?,
        dir: m.dir,
        max_binlog_size: m.max_binlog_size,
        server_id: m.server_id,
        no_wait: m.no_wait,
        mysql8,
        auth,
    })
}

/// `loadgen binlog`: the master's stream, unpaced, into one file.
fn write_binlog(
    out: &std::path::Path,
    shape: &traffic::Shape,
    mysql8: Option<binlog::Mysql8>,
) -> Result<(), String> {
    if shape.rows.is_none() {
        return Err("binlog: --rows is required".into());
    }
    let dir = std::env::temp_dir().join(format!("loadgen-binlog-{}", std::process::id()));
    let enc = binlog::Encoder {
        server_id: 1,
        row_bytes: shape.row_bytes,
        mysql8,
    };
    let mut writer = binlog::Writer::create(&dir, enc, u64::MAX)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut gen = traffic::Generator::new(shape);
    let mut txn = Vec::new();
    let started = std::time::Instant::now();
    let now = unix_nanos();
    loop {
        gen.transaction(&mut txn);
        if txn.is_empty() {
            break;
        }
        writer
            .append(&txn, now)
            .map_err(|e| format!("cannot write the binlog: {e}"))?;
    }
    let (name, size) = writer.position();
    drop(writer);
    std::fs::rename(dir.join(&name), out)
        .or_else(|_| std::fs::copy(dir.join(&name), out).map(|_| ()))
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"rows\":{},\"bytes\":{size},\"seconds\":{secs:.3},\"rows_per_s\":{:.0}}}",
        gen.made(),
        gen.made() as f64 / secs.max(1e-9)
    );
    Ok(())
}
