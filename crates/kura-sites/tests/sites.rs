//! Sites against real storage: a local directory and buckets of a real S3-compatible server
//! (Garage, started here on loopback; `.ci/run` installs it).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kura_placement::envelope::Keyring;
use kura_sites::{Site, SiteConfig, SiteError};

/// A single-node Garage on loopback, stopped when dropped.
struct Garage {
    child: Child,
    config: PathBuf,
    endpoint: String,
    key_id: String,
    secret: String,
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
    fn start() -> Garage {
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
        let child = Command::new("garage")
            .arg("-c")
            .arg(&config)
            .arg("server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("garage is not installed: `cargo install garage --locked` (.ci/run does it)");
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

    /// A new bucket the key may use, as a site.
    fn site(&self, id: &str, region: &str, bucket: &str, secret: &str) -> SiteConfig {
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
    fn existing(&self, id: &str, region: &str, bucket: &str, secret: &str) -> SiteConfig {
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

fn file_site(dir: &Path, id: &str, region: &str, secret: &str) -> SiteConfig {
    SiteConfig {
        id: id.into(),
        region: region.into(),
        url: format!("file://{}", dir.display()),
        access_key_id: None,
        secret_access_key: None,
        secret: secret.into(),
        risk: 0.0,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn copies_round_trip_on_two_buckets_and_a_directory() {
    let g = Garage::start();
    let disk = tempfile::tempdir().unwrap();
    let configs = [
        file_site(disk.path(), "site-a", "kanto", "secret a"),
        g.site("site-b", "kansai", "site-b", "secret b"),
        g.site("site-c", "hokkaido", "site-c", "secret c"),
    ];
    let rt = runtime();
    rt.block_on(async {
        let mut keyring = Keyring::default();
        for c in configs {
            let site = Site::open(c).unwrap();
            site.initialize().await.unwrap();
            site.authenticate().await.unwrap();
            let object: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            let copy = site
                .put(&mut keyring, "data/ab/abcd", &object)
                .await
                .unwrap();
            assert_eq!(copy.site, site.id());
            assert_eq!(copy.region, site.region());
            assert_eq!(copy.algorithm, "XChaCha20-Poly1305");
            assert_eq!(copy.key_ref, format!("{}/v1", site.id()));
            assert_eq!(site.get(&keyring, "data/ab/abcd").await.unwrap(), object);
            // The site holds only the sealed copy.
            site.delete("data/ab/abcd").await.unwrap();
            site.delete("data/ab/abcd").await.unwrap();
            assert!(matches!(
                site.get(&keyring, "data/ab/abcd").await,
                Err(SiteError::NotFound { .. })
            ));
        }
    });
}

#[test]
fn a_site_with_the_wrong_identity_is_not_written() {
    let g = Garage::start();
    let rt = runtime();
    rt.block_on(async {
        let b = Site::open(g.site("site-b", "kansai", "site-b", "secret b")).unwrap();
        b.initialize().await.unwrap();
        // Another site configured onto site-b's bucket: it answers with site-b's marker.
        let impostor = Site::open(g.existing("site-d", "kyushu", "site-b", "secret d")).unwrap();
        let e = impostor.authenticate().await.unwrap_err().to_string();
        assert!(e.contains("says it is \"site-b\""), "{e}");
        // The right name with the wrong secret.
        let forged = Site::open(g.existing("site-b", "kansai", "site-b", "not it")).unwrap();
        let e = forged.authenticate().await.unwrap_err().to_string();
        assert!(e.contains("not made with its secret"), "{e}");
        // A new bucket has no marker until it is initialized.
        let fresh = Site::open(g.site("site-e", "tohoku", "site-e", "secret e")).unwrap();
        let e = fresh.authenticate().await.unwrap_err().to_string();
        assert!(e.contains("no marker"), "{e}");
    });
}

#[test]
fn damaged_copies_are_found_and_old_keys_still_open() {
    let disk = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let site = Site::open(file_site(disk.path(), "site-a", "kanto", "s")).unwrap();
        site.initialize().await.unwrap();
        let mut keyring = Keyring::default();
        site.put(&mut keyring, "index/01", b"first").await.unwrap();
        keyring.rotate("site-a");
        let copy = site.put(&mut keyring, "index/02", b"second").await.unwrap();
        assert_eq!(copy.key_ref, "site-a/v2");
        assert_eq!(site.get(&keyring, "index/01").await.unwrap(), b"first");
        assert_eq!(site.get(&keyring, "index/02").await.unwrap(), b"second");

        let stored = disk.path().join("index/02");
        let mut bytes = std::fs::read(&stored).unwrap();
        assert!(
            !bytes.windows(6).any(|w| w == b"second"),
            "sealed at the site"
        );
        bytes[12] ^= 1;
        std::fs::write(&stored, &bytes).unwrap();
        let e = site.get(&keyring, "index/02").await.unwrap_err();
        assert!(matches!(e, SiteError::Damaged { .. }), "{e}");
        assert!(Site::open(file_site(disk.path(), "x", "r", "s")).is_ok());
        let bad = SiteConfig {
            url: "ftp://nowhere".into(),
            ..file_site(disk.path(), "y", "r", "s")
        };
        assert!(
            Site::open(bad)
                .unwrap_err()
                .to_string()
                .contains("expected file://")
        );
    });
}
