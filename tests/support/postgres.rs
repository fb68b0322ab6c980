//! A real PostgreSQL server for the tests: a throw-away cluster of Debian's package
//! (`scripts/postgres`), on a port of its own, stopped when dropped; and fresh
//! databases in a cluster the test script started (`PHASED_TEST_POSTGRES`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Postgres {
    dir: tempfile::TempDir,
    pub port: u16,
    tls: bool,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres")
}

impl Postgres {
    /// Initializes and starts a cluster (about a second).
    pub fn start() -> Postgres {
        Postgres::start_with(false)
    }

    /// A cluster that takes TLS connections only ([`Postgres::certificate`]).
    pub fn start_tls() -> Postgres {
        Postgres::start_with(true)
    }

    /// The self-signed certificate of a TLS cluster.
    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join("pg/server.crt")
    }

    fn start_with(tls: bool) -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        // The server runs as `postgres` when the tests run as root: it must reach its folder.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        // Tests run in parallel: a free port may be taken before the server binds it.
        let mut pg = Postgres { dir, port: 0, tls };
        for _ in 0..5 {
            pg.port = super::free_port();
            if pg.try_server("start").is_ok() {
                return pg;
            }
        }
        pg.server("start");
        pg
    }

    fn try_server(&self, action: &str) -> Result<(), String> {
        let data = self.dir.path().join("pg");
        let tls = if self.tls { "1" } else { "" };
        let out = Command::new(script())
            .arg(action)
            .arg(&data)
            .arg(self.port.to_string())
            .env("PHASED_PG_TLS", tls)
            .output()
            .unwrap();
        if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
    }

    fn server(&self, action: &str) {
        if let Err(e) = self.try_server(action) {
            panic!("scripts/postgres {action}: {e}");
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT` (add `/NAME`).
    pub fn base_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    pub fn stop(&self) {
        self.server("stop");
    }

    pub fn start_again(&self) {
        self.server("start");
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pg/server.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.server("stop");
    }
}

/// Creates a database of its own for one test; returns its URL.
pub fn create_database(base: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!("t{}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), rand_suffix());
    let mut client = postgres::Client::connect(&format!("{base}/postgres"), postgres::NoTls)
        .unwrap_or_else(|e| panic!("PostgreSQL at {base}: {e}"));
    client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    format!("{base}/{name}")
}

/// Drops a test's database, closing what is still connected to it (best effort: this
/// runs while a failed test unwinds too).
pub fn drop_database(url: &str) {
    let Some((base, name)) = url.rsplit_once('/') else { return };
    if let Ok(mut client) = postgres::Client::connect(&format!("{base}/postgres"), postgres::NoTls) {
        let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    }
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{nanos:x}")
}

/// The rows of a query, each value as text (the simple query protocol's).
pub fn rows(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client
        .simple_query(sql)
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => {
                Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}
