//! A real `kura serve` for the tests that use the service.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use kura_repo::BackendError;
use kura_repo::remote::{HttpBackend, Remote};

use super::{Env, contents, restored, run_ok};

/// A running `kura serve`, stopped when dropped.
pub struct Service {
    pub child: Child,
    pub url: String,
    pub fingerprint: String,
    pub data: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `kura` binary, with no repository or user from the environment.
pub fn kura() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kura"));
    c.env_remove("KURA_REPO")
        .env_remove("KURA_USER")
        .env_remove("KURA_USER_PASSWORD");
    c
}

impl Service {
    /// Starts `kura serve` on a free port.
    pub fn start(data: &Path) -> Service {
        Service::start_on(data, "127.0.0.1:0")
    }

    /// Starts `kura serve` on `listen` and waits until it accepts connections.
    pub fn start_on(data: &Path, listen: &str) -> Service {
        Service::start_logging(data, listen, "warn", Stdio::null())
    }

    /// Starts `kura serve` with the tracing filter `log`, its log going to `stderr`.
    pub fn start_logging(data: &Path, listen: &str, log: &str, stderr: Stdio) -> Service {
        Service::start_with(data, listen, log, stderr, &[])
    }

    /// Starts `kura serve` with more arguments.
    pub fn start_with(
        data: &Path,
        listen: &str,
        log: &str,
        stderr: Stdio,
        extra: &[&str],
    ) -> Service {
        let mut child = kura()
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data)
            .args(extra)
            .env("KURA_LOG", log)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = lines
            .next()
            .unwrap()
            .unwrap()
            .strip_prefix("listening on ")
            .unwrap()
            .to_string();
        // Keep draining the service's stdout so it never writes into a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let fingerprint = fs::read_to_string(data.join("tls/fingerprint"))
            .unwrap()
            .trim()
            .to_string();
        Service {
            child,
            url,
            fingerprint,
            data: data.to_path_buf(),
        }
    }

    /// Runs `kura admin` on the service's data directory.
    pub fn admin(&self, args: &[&str]) -> String {
        let mut c = kura();
        c.arg("admin").arg("--data-dir").arg(&self.data).args(args);
        run_ok(c)
    }

    /// Runs `kura admin --json` on the service's data directory; its exit code and what it
    /// printed, parsed.
    pub fn admin_json_code(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let out = kura()
            .arg("admin")
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "{e}: {text}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), value)
    }

    /// Runs `kura admin --json` on the service's data directory and parses what it prints.
    pub fn admin_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.admin(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Adds a user with a paid contract.
    pub fn add_user(&self, name: &str, password: &str, dir: &Path) {
        let pw = dir.join(format!("{name}.pw"));
        fs::write(&pw, format!("{password}\n")).unwrap();
        self.admin(&["user", "add", name, "--password-file", pw.to_str().unwrap()]);
        self.contract(name, &[]);
    }

    /// Gives a user a paid contract until 2099, with more `contract set` options.
    pub fn contract(&self, name: &str, more: &[&str]) {
        let mut args = vec![
            "contract",
            "set",
            name,
            "--until",
            "2099-12-31",
            "--paid",
            "yes",
        ];
        args.extend_from_slice(more);
        self.admin(&args);
    }

    /// An HTTPS client that trusts this service's certificate.
    pub fn http(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .use_preconfigured_tls(
                kura_repo::remote::tls_config(Some(&self.fingerprint), None).unwrap(),
            )
            .build()
            .unwrap()
    }

    /// A session token for `user`, from `POST /v1/login`.
    pub fn token(&self, http: &reqwest::blocking::Client, user: &str, password: &str) -> String {
        let answer = http
            .post(format!("{}/v1/login", self.url))
            .body(serde_json::json!({"user": user, "password": password}).to_string())
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        v["token"].as_str().unwrap().to_string()
    }

    /// Logs in as a client library would.
    pub fn backend(&self, user: &str, password: &str) -> Result<HttpBackend, BackendError> {
        HttpBackend::connect(Remote {
            url: self.url.clone(),
            fingerprint: Some(self.fingerprint.clone()),
            user: user.into(),
            password: Some(password.into()),
            client_cert: None,
            retry_for: std::time::Duration::from_secs(5),
            piece_size: None,
            on_outage: None,
        })
    }
}

/// A client command as `user` against the service.
pub fn client(env: &Env, svc: &Service, user: &str, password: &str, args: &[&str]) -> Command {
    let mut c = kura();
    c.arg("--repo")
        .arg(&svc.url)
        .arg("--state-dir")
        .arg(env.path(&format!("state-{user}")))
        .args(args)
        .env("KURA_USER", user)
        .env("KURA_USER_PASSWORD", password)
        .env("KURA_SERVER_FINGERPRINT", &svc.fingerprint)
        .env("KURA_PASSWORD", format!("encryption passphrase of {user}"))
        .env("KURA_INSECURE_FAST_KDF", "1");
    c
}

/// Checks every byte of `user`'s repository, restores its latest snapshot and compares it with
/// `src`.
pub fn restore_and_compare(env: &Env, svc: &Service, user: &str, password: &str, src: &Path) {
    run_ok(client(env, svc, user, password, &["check", "--read-data"]));
    let t = env.path("t");
    let _ = fs::remove_dir_all(&t);
    run_ok(client(
        env,
        svc,
        user,
        password,
        &["restore", "latest", "--target", t.to_str().unwrap()],
    ));
    assert_eq!(contents(src), contents(&restored(&t, src)));
}

/// Where user 1's object (as the conditions name it: `data/…`, `config`) lies at a demo site
/// (`demo-east`, …) of the service with data directory `data`.
pub fn demo_file(data: &Path, site: &str, object: &str) -> std::path::PathBuf {
    let dir = data.join("sites").join(site.trim_start_matches("demo-"));
    let object = if object == "config" {
        "config/config"
    } else {
        object
    };
    dir.join("users/1").join(object)
}

/// Runs `kura --json ARGS` as `user` and parses what it prints.
pub fn client_json(
    env: &Env,
    svc: &Service,
    user: &str,
    password: &str,
    args: &[&str],
) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = run_ok(client(env, svc, user, password, &all));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Backs `src` up as `user`; returns what kura printed.
pub fn backup(env: &Env, svc: &Service, user: &str, password: &str, src: &Path) -> String {
    run_ok(client(
        env,
        svc,
        user,
        password,
        &["backup", src.to_str().unwrap()],
    ))
}

/// The notices of one kind (`statement`, `integrity`, ...) in `user`'s message history.
pub fn messages_of(
    env: &Env,
    svc: &Service,
    user: &str,
    password: &str,
    kind: &str,
) -> Vec<serde_json::Value> {
    let all = client_json(env, svc, user, password, &["messages"]);
    all.as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == kind)
        .cloned()
        .collect()
}

/// Changes bytes `range` of user 1's object at a demo site "consistently": the copy is opened
/// with the site's key from the service's keyring, changed, and sealed again, so it passes
/// its own checks. Returns the forged copy as written.
pub fn forge(data: &Path, site: &str, object: &str, range: std::ops::Range<usize>) -> Vec<u8> {
    use kura_placement::envelope::{self, Keyring};
    let keyring = Keyring::decode(&fs::read(data.join("keyring.json")).unwrap()).unwrap();
    let file = demo_file(data, site, object);
    let name = format!("users/1/{object}");
    let mut plain = envelope::open(&keyring, site, &name, &fs::read(&file).unwrap()).unwrap();
    for b in &mut plain[range] {
        *b = !*b;
    }
    let (version, key) = keyring.latest(site).unwrap();
    let forged = envelope::seal(&key, version, site, &name, &plain);
    fs::write(&file, &forged).unwrap();
    forged
}
