//! A single-node Garage (a real S3-compatible server) on loopback for tests; `.ci/run` installs
//! it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kura_sites::SiteConfig;

fn server(config: &Path) -> Child {
    Command::new("garage")
        .arg("-c")
        .arg(config)
        .arg("server")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("garage is not installed: `cargo install garage --locked` (.ci/run does it)")
}

/// A single-node Garage on loopback, stopped when dropped.
pub struct Garage {
    child: Child,
    config: PathBuf,
    /// The S3 endpoint URL.
    pub endpoint: String,
    /// The access key made for the tests.
    pub key_id: String,
    /// Its secret.
    pub secret: String,
    _dir: tempfile::TempDir,
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn garage(config: &Path, args: &[&str]) -> String {
    let out = Command::new("garage")
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .expect("garage is not installed: `cargo install garage --locked` (.ci/run does it)");
    assert!(
        out.status.success(),
        "garage {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {label:?} in {text}"))
}

impl Garage {
    /// Starts a new single-node Garage with a key called `kura`.
    pub fn start() -> Garage {
        let dir = tempfile::tempdir().unwrap();
        let (s3, rpc, admin) = (free_port(), free_port(), free_port());
        let config = dir.path().join("garage.toml");
        let rpc_secret = kura_core::id::hex(&kura_core::crypto::random_bytes::<32>());
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
                d = dir.path().display()
            ),
        )
        .unwrap();
        let child = server(&config);
        let deadline = Instant::now() + Duration::from_secs(60);
        let node = loop {
            let out = Command::new("garage")
                .arg("-c")
                .arg(&config)
                .arg("status")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(line) = text.lines().find(|l| l.contains("NO ROLE ASSIGNED")) {
                break line.split_whitespace().next().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "garage did not start");
            std::thread::sleep(Duration::from_millis(200));
        };
        garage(
            &config,
            &["layout", "assign", "-z", "dc1", "-c", "1G", &node],
        );
        garage(&config, &["layout", "apply", "--version", "1"]);
        let key = garage(&config, &["key", "create", "kura"]);
        Garage {
            child,
            endpoint: format!("http://127.0.0.1:{s3}"),
            key_id: field(&key, "Key ID:"),
            secret: field(&key, "Secret key:"),
            config,
            _dir: dir,
        }
    }

    /// Stops the server (its data stays) until [`Garage::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same ports and data, and waits until S3 answers.
    pub fn restart(&mut self) {
        self.child = server(&self.config);
        let addr = self.endpoint.trim_start_matches("http://").to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "garage did not restart");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A new bucket the key may use, as a site.
    pub fn site(&self, id: &str, region: &str, bucket: &str, secret: &str) -> SiteConfig {
        garage(&self.config, &["bucket", "create", bucket]);
        garage(
            &self.config,
            &[
                "bucket", "allow", "--read", "--write", "--owner", bucket, "--key", "kura",
            ],
        );
        self.existing(id, region, bucket, secret)
    }

    /// A site config for a bucket that already exists.
    pub fn existing(&self, id: &str, region: &str, bucket: &str, secret: &str) -> SiteConfig {
        SiteConfig {
            id: id.into(),
            region: region.into(),
            url: format!("s3://{bucket}?endpoint={}&region=garage", self.endpoint),
            access_key_id: Some(self.key_id.clone()),
            secret_access_key: Some(self.secret.clone()),
            secret: secret.into(),
            risk: 0.0,
        }
    }
}
