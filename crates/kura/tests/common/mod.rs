//! Helpers for driving the real `kura` binary against real directories.

pub mod garage;
pub mod service;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A repository, a state directory (one "machine"), and a scratch area.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub state: PathBuf,
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let state = dir.path().join("state");
        Env { dir, repo, state }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A command for this repository as this machine, with the test passphrase.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_as(&self.state, args)
    }

    /// A command as another machine (another state directory).
    pub fn cmd_as(&self, state: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kura"));
        c.arg("--repo")
            .arg(&self.repo)
            .arg("--state-dir")
            .arg(state)
            .args(args);
        c.env("KURA_PASSWORD", "correct horse")
            .env("KURA_INSECURE_FAST_KDF", "1")
            .env_remove("KURA_REPO")
            .env_remove("KURA_RECOVERY_CODE")
            .env_remove("KURA_PASSWORD_FILE");
        c
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        run_ok(self.cmd(args))
    }

    /// Runs and returns the output whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// `kura init`; returns the recovery code.
    pub fn init(&self) -> String {
        let v = self.json(&["init"]);
        v["recovery_code"].as_str().unwrap().to_string()
    }

    pub fn backup(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["backup"];
        a.extend_from_slice(args);
        self.json(&a)
    }

    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        self.json(&["snapshots"]).as_array().unwrap().clone()
    }
}

pub fn run_ok(mut c: Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed with {:?}\nstdout: {}\nstderr: {}",
        c,
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Deterministic pseudo-random bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes a tree of `files` files with a mix of sizes.
pub fn make_tree(root: &Path, files: usize, seed: u64) {
    for i in 0..files {
        let dir = root.join(format!("d{}", i % 7));
        fs::create_dir_all(&dir).unwrap();
        let len = match i % 5 {
            0 => 0,
            1 => 10 + i,
            2 => 5000 + i * 13,
            3 => 70_000,
            _ => 1500 + i,
        };
        let mut data = noise(len, seed + i as u64);
        if i.is_multiple_of(2) {
            data.iter_mut().for_each(|b| *b &= 0x0f);
        }
        fs::write(dir.join(format!("f{i}.bin")), data).unwrap();
    }
}

/// Every file under `root` with its contents, relative paths, for comparing trees.
pub fn contents(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
            if m.is_dir() {
                out.push((rel, b"<dir>".to_vec()));
                stack.push(e.path());
            } else if m.file_type().is_symlink() {
                out.push((
                    rel,
                    fs::read_link(e.path())
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                ));
            } else {
                out.push((rel, fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Where a restore of the whole snapshot of absolute `source` lands under `target`.
pub fn restored(target: &Path, source: &Path) -> PathBuf {
    target.join(source.strip_prefix("/").unwrap())
}
