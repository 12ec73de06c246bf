//! Installs what a fresh machine lacks, idempotently: Debian packages, cargo-pgrx at the
//! pinned version, and pgrx's configuration (kept inside the repository's target directory).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::run::{output, run, step};

/// Must equal the `pgrx` pin in the workspace Cargo.toml.
pub const PGRX_VERSION: &str = "0.18.1";
pub const PG_CONFIG: &str = "/usr/bin/pg_config";
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Debian packages every command needs.
const BASE_PACKAGES: &[&str] = &[
    "postgresql-15",
    "postgresql-client-15",
    "postgresql-server-dev-15",
    "libclang-dev",
    "sudo",
];

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repo")
        .to_path_buf()
}

pub fn pgrx_home() -> PathBuf {
    repo_root().join("target").join("pgrx-home")
}

/// A `cargo` command with pgrx's home set, run from `dir`.
pub fn cargo(dir: &Path) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(dir).env("PGRX_HOME", pgrx_home());
    c
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Installs the missing packages among `pkgs` (running `apt-get update` once, first).
pub fn ensure_packages(pkgs: &[&str]) -> Result<()> {
    let missing: Vec<&str> = pkgs.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    step(&format!(
        "installing Debian packages: {}",
        missing.join(" ")
    ));
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn ensure_cargo_pgrx() -> Result<()> {
    let have = Command::new("cargo")
        .args(["pgrx", "--version"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if have.ends_with(PGRX_VERSION) {
        return Ok(());
    }
    step(&format!(
        "installing cargo-pgrx {PGRX_VERSION} (found: {}; takes a few minutes once)",
        if have.is_empty() { "none" } else { &have }
    ));
    run(Command::new("cargo").args([
        "install",
        "cargo-pgrx",
        "--version",
        PGRX_VERSION,
        "--locked",
    ]))
}

fn ensure_pgrx_init() -> Result<()> {
    let config = pgrx_home().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap_or_default();
    if text.contains(&format!("pg15 = \"{PG_CONFIG}\"")) {
        return Ok(());
    }
    step("configuring pgrx for Debian's PostgreSQL 15");
    std::fs::create_dir_all(pgrx_home())?;
    run(cargo(&repo_root()).args(["pgrx", "init", "--pg15", PG_CONFIG]))
}

/// Everything the build and the clusters need.
pub fn ensure_base() -> Result<()> {
    ensure_packages(BASE_PACKAGES)?;
    ensure_cargo_pgrx()?;
    ensure_pgrx_init()?;
    Ok(())
}

/// Builds the extension and installs it into Debian's PostgreSQL 15.
/// Unlinks the installed steward.so, before anything installs it again (`cargo pgrx install`,
/// and `cargo pgrx test`, which installs into the same directory): the install then writes a new
/// file, so a server that has the old one mapped keeps it (overwriting it in place crashes that
/// server's processes with SIGBUS or SIGSEGV), and new backends load the new one.
pub fn unlink_installed_library() -> Result<()> {
    let pkglib = output(Command::new(PG_CONFIG).arg("--pkglibdir"))?;
    let library = Path::new(pkglib.trim()).join("steward.so");
    if library.exists() {
        std::fs::remove_file(&library)
            .with_context(|| format!("removing the old {}", library.display()))?;
    }
    Ok(())
}

pub fn install_extension(release: bool) -> Result<()> {
    step(&format!(
        "building and installing the steward extension ({})",
        if release { "release" } else { "debug" }
    ));
    unlink_installed_library()?;
    let mut c = cargo(&repo_root().join("extension"));
    c.args(["pgrx", "install", "--pg-config", PG_CONFIG]);
    if release {
        c.arg("--release");
    }
    run(&mut c)
}

/// The path of Debian's pg_regress.
pub fn pg_regress() -> Result<PathBuf> {
    let pkglib = output(Command::new(PG_CONFIG).arg("--pkglibdir"))?;
    let p = Path::new(pkglib.trim()).join("pgxs/src/test/regress/pg_regress");
    p.exists()
        .then_some(p.clone())
        .with_context(|| format!("{} is missing", p.display()))
}

/// The schemathesis version the API's fuzz test runs (PyPI).
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// schemathesis in a virtual environment inside target/ (made once; a second call reuses it).
pub fn ensure_schemathesis() -> Result<PathBuf> {
    let venv = repo_root().join("target").join("schemathesis-venv");
    let bin = venv.join("bin").join("schemathesis");
    let wanted = format!("version {SCHEMATHESIS_VERSION}");
    let have = Command::new(&bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(&wanted))
        .unwrap_or(false);
    if have {
        return Ok(bin);
    }
    step(&format!(
        "installing schemathesis {SCHEMATHESIS_VERSION} from PyPI into {}",
        venv.display()
    ));
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "-q",
        &format!("schemathesis=={SCHEMATHESIS_VERSION}"),
    ]))?;
    Ok(bin)
}

/// The standardwebhooks version the relay's tests verify signatures with (PyPI): the oracle,
/// written independently of steward's signer.
pub const STANDARDWEBHOOKS_VERSION: &str = "1.1.0";

/// A Python with standardwebhooks, in its own virtual environment inside target/ (made once);
/// returns the interpreter.
pub fn ensure_standardwebhooks() -> Result<PathBuf> {
    let venv = repo_root().join("target").join("webhooks-venv");
    let python = venv.join("bin").join("python");
    let have = Command::new(venv.join("bin").join("pip"))
        .args(["show", "standardwebhooks"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .contains(&format!("Version: {STANDARDWEBHOOKS_VERSION}"))
        })
        .unwrap_or(false);
    if have {
        return Ok(python);
    }
    step(&format!(
        "installing standardwebhooks {STANDARDWEBHOOKS_VERSION} from PyPI into {}",
        venv.display()
    ));
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "-q",
        &format!("standardwebhooks=={STANDARDWEBHOOKS_VERSION}"),
    ]))?;
    Ok(python)
}
