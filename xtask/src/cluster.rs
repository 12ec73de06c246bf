//! A private PostgreSQL cluster run as the `postgres` OS user, on its own port, with its
//! socket in its own directory under /tmp. Stopped when dropped unless kept (the demo).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::run::{run, step};
use crate::setup::PG_BIN;

pub struct Cluster {
    /// Holds the socket, the log and `data/`.
    pub dir: PathBuf,
    pub port: u16,
    /// The server's binaries: Debian's, or a private installation's (the upgrade suite).
    bin: PathBuf,
    running: bool,
    keep: bool,
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--", program]);
    c
}

impl Cluster {
    /// Creates a fresh cluster in /tmp/steward-{name} (any previous one there is stopped and
    /// removed) with `extra_conf` appended to postgresql.conf.
    pub fn create(name: &str, port: Option<u16>, extra_conf: &str) -> Result<Cluster> {
        Cluster::create_with(name, port, extra_conf, std::path::Path::new(PG_BIN))
    }

    /// As [`Cluster::create`], with the server binaries in `bin`.
    pub fn create_with(
        name: &str,
        port: Option<u16>,
        extra_conf: &str,
        bin: &std::path::Path,
    ) -> Result<Cluster> {
        let bin = bin.to_path_buf();
        let dir = PathBuf::from(format!("/tmp/steward-{name}"));
        let data = dir.join("data");
        if data.join("postmaster.pid").exists() {
            let _ = as_postgres(&bin.join("pg_ctl").to_string_lossy())
                .args(["-D", &data.to_string_lossy(), "-m", "immediate", "stop"])
                .output();
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)?;
        run(Command::new("chown").args(["postgres:postgres", &dir.to_string_lossy()]))?;
        let port = match port {
            Some(p) => p,
            None => free_port()?,
        };
        step(&format!(
            "creating a private cluster in {} on port {port}",
            dir.display()
        ));
        let out = as_postgres(&bin.join("initdb").to_string_lossy())
            .args([
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
            ])
            .args(["--encoding=UTF8", "--no-locale", "--no-sync"])
            .output()?;
        if !out.status.success() {
            bail!("initdb failed:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        let conf = format!(
            "\n# steward private cluster\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nmax_connections = 200\nshared_buffers = 256MB\n\
             log_min_messages = warning\n{extra_conf}\n",
            dir.display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path)?;
        text.push_str(&conf);
        std::fs::write(&conf_path, text)?;
        Ok(Cluster {
            dir,
            port,
            bin,
            running: false,
            keep: false,
        })
    }

    pub fn start(&mut self) -> Result<()> {
        let data = self.dir.join("data");
        let log = self.dir.join("postgres.log");
        let out = as_postgres(&self.bin.join("pg_ctl").to_string_lossy())
            .args(["-D", &data.to_string_lossy(), "-l", &log.to_string_lossy()])
            .args(["-w", "-t", "60", "start"])
            .output()?;
        if !out.status.success() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            bail!(
                "the cluster did not start:\n{}\n{tail}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.running = true;
        Ok(())
    }

    pub fn stop(&mut self) {
        if self.running {
            let data = self.dir.join("data");
            let _ = as_postgres(&self.bin.join("pg_ctl").to_string_lossy())
                .args(["-D", &data.to_string_lossy(), "-m", "fast", "-w", "stop"])
                .output();
            self.running = false;
        }
    }

    /// Deletes the cluster's directory (after `stop`).
    pub fn remove(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Leaves the cluster running when this value is dropped.
    pub fn keep_running(&mut self) {
        self.keep = true;
    }

    pub fn host(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }

    /// `psql` against this cluster as `postgres`, quiet and stopping at the first error.
    pub fn psql(&self, db: &str) -> Command {
        let mut c = Command::new(format!("{PG_BIN}/psql"));
        c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", &self.host()])
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db]);
        c
    }

    /// Creates database `db` and runs the repository's SQL `files` in it, in order.
    pub fn create_database(&self, db: &str, files: &[&str]) -> Result<()> {
        run(self
            .psql("postgres")
            .args(["-c", &format!("CREATE DATABASE {db}")]))?;
        for file in files {
            run(self
                .psql(db)
                .arg("-f")
                .arg(crate::setup::repo_root().join(file)))?;
        }
        Ok(())
    }

    pub fn conninfo(&self, db: &str, user: &str) -> String {
        format!(
            "host={} port={} dbname={db} user={user}",
            self.host(),
            self.port
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.keep {
            self.stop();
        }
    }
}
