//! Running commands: echoing what runs, teeing output while it is parsed for test counts.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Prints a step header, so long runs show progress.
pub fn step(what: &str) {
    println!("\n==> {what}");
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd`, inheriting stdio; fails if it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<()> {
    println!("  $ {}", describe(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start {}", describe(cmd)))?;
    if !status.success() {
        bail!("{} failed with {status}", describe(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; fails if it exits non-zero.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not start {}", describe(cmd)))?;
    if !out.status.success() {
        bail!("{} failed with {}", describe(cmd), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with stdout and stderr echoed as they come, and returns (success, all output).
pub fn tee(cmd: &mut Command) -> Result<(bool, String)> {
    println!("  $ {}", describe(cmd));
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {}", describe(cmd)))?;
    let stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || echo_lines(stderr, true));
    let mut all = echo_lines(child.stdout.take().expect("piped"), false);
    all.push_str(&err_thread.join().unwrap_or_default());
    let status = child.wait()?;
    Ok((status.success(), all))
}

fn echo_lines(stream: impl Read, to_stderr: bool) -> String {
    let mut all = String::new();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
        all.push_str(&line);
        all.push('\n');
    }
    all
}

/// Test counts read from a runner's output.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }
}

/// Sums every `test result: ... N passed; M failed; K ignored` line of `cargo test` output.
pub fn cargo_test_counts(output: &str) -> Counts {
    let mut c = Counts::default();
    for line in output
        .lines()
        .filter(|l| l.trim_start().starts_with("test result:"))
    {
        c.passed += number_before(line, " passed");
        c.failed += number_before(line, " failed");
        c.ignored += number_before(line, " ignored");
    }
    c
}

/// Reads pg_regress' per-test lines: `test name ... ok  12 ms` or `... FAILED`.
pub fn pg_regress_counts(output: &str) -> Counts {
    let mut c = Counts::default();
    for line in output.lines() {
        if line.contains("... ok") {
            c.passed += 1;
        } else if line.contains("... FAILED") || line.contains("... failed") {
            c.failed += 1;
        }
    }
    c
}

fn number_before(line: &str, word: &str) -> u64 {
    let Some(end) = line.find(word) else { return 0 };
    let digits: String = line[..end]
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits
        .chars()
        .rev()
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cargo_test_lines() {
        let out = "running 3 tests\n\
            test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out\n\
            test result: FAILED. 10 passed; 2 failed; 0 ignored; 0 measured\n";
        assert_eq!(
            cargo_test_counts(out),
            Counts {
                passed: 13,
                failed: 2,
                ignored: 1
            }
        );
        assert_eq!(cargo_test_counts("nothing here"), Counts::default());
    }

    #[test]
    fn reads_pg_regress_lines() {
        let out = "test isolation                  ... ok           45 ms\n\
                   test forgery                    ... FAILED       12 ms\n\
                   test tokens                     ... ok           10 ms\n";
        assert_eq!(
            pg_regress_counts(out),
            Counts {
                passed: 2,
                failed: 1,
                ignored: 0
            }
        );
    }
}
