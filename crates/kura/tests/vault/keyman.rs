//! The key manager through real `kura keyman serve` and `kura vault serve` processes: a share
//! released only to matching credentials, guesses that back off (also in parallel and across
//! a restart), values restored for an owner whose wallet is lost, and the split that leaves
//! neither service able to rebuild the key alone.

use std::path::Path;
use std::sync::Arc;

use kura_wallet::registered::Registered;
use kura_wallet::split::combine;

use super::{init_wallet, wallet, wallet_ok};
use crate::fixture::{Env, ValueService, stderr};

const PASSWORD: &str = "correct horse battery staple";

/// A key manager and a vault that trust each other: the key manager learns where the vault
/// is, the vault learns the key manager's signing key.
fn services(env: &Env, keyman_args: &[&str]) -> (ValueService, ValueService) {
    let mut keyman = ValueService::keyman(env, keyman_args);
    let vault = ValueService::vault(env, &["--keyman-key", &keyman.key_hex()]);
    let mut args = keyman_args.to_vec();
    args.extend([
        "--vault",
        &vault.url,
        "--vault-fingerprint",
        &vault.fingerprint,
    ]);
    keyman.restart_with(&args);
    (vault, keyman)
}

/// Writes `text` to a file in `env` and returns its path.
fn file(env: &Env, name: &str, text: &str) -> String {
    let p = env.path(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// A biometric reading: the enrolled template, each feature moved by `by`.
fn reading(by: f32) -> String {
    (0..64)
        .map(|i| format!("{}", 0.3 + (i as f32) * 0.005 + by))
        .collect::<Vec<_>>()
        .join(" ")
}

fn escrow(env: &Env, dir: &str, keyman: &ValueService, credentials: &[&str]) -> String {
    let recovery = env.path(&format!("{dir}-recovery.toml"));
    let mut args = vec![
        "escrow",
        "--keyman",
        &keyman.url,
        "--keyman-fingerprint",
        &keyman.fingerprint,
        "--recovery-file",
        recovery.to_str().unwrap(),
    ];
    args.extend(credentials);
    wallet_ok(env, dir, &args);
    recovery.to_str().unwrap().to_string()
}

fn add_and_deposit(env: &Env, dir: &str, name: &str) -> (u64, serde_json::Value) {
    let added = wallet_ok(
        env,
        dir,
        &[
            "add",
            "--kind",
            "prepaid",
            "--name",
            name,
            "--total",
            "3000",
            "--balance",
            "3000",
        ],
    );
    let id = added["id"].as_u64().unwrap();
    let record = wallet_ok(env, dir, &["show", &id.to_string()])["record"].clone();
    let dep = wallet_ok(env, dir, &["deposit", &id.to_string()]);
    (dep["id"].as_u64().unwrap(), record)
}

/// `kura keyman attempts`: (what, outcome) of each, oldest first.
fn attempts(env: &Env, keyman: &ValueService) -> Vec<(String, String)> {
    let out = env
        .kura()
        .args(["keyman", "attempts", "--json", "--data-dir"])
        .arg(keyman.data())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    crate::fixture::parse_json(&String::from_utf8(out.stdout).unwrap())
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["what"].as_str().unwrap().into(),
                a["outcome"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[test]
fn the_key_manager_releases_a_share_only_to_matching_credentials_and_guesses_back_off() {
    let env = Env::new();
    let (vault, mut keyman) = services(&env, &[]);
    init_wallet(&env, "w", &vault, &vault.key_hex());
    let pw = file(&env, "pw", &format!("{PASSWORD}\n"));
    let wrong = file(&env, "wrong", "correct horse battery stapler\n");
    let enrolled = file(&env, "enrolled", &reading(0.0));
    let near = file(&env, "near", &reading(0.03));
    let far = file(&env, "far", &reading(0.3));
    let recovery = escrow(
        &env,
        "w",
        &keyman,
        &["--owner-password-file", &pw, "--biometric-file", &enrolled],
    );
    let key_file = env.path("w/value.key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    let rebuild = |password: &str, bio: Option<&str>| {
        let mut args = vec![
            "rebuild-key",
            "--recovery-file",
            &recovery,
            "--owner-password-file",
            password,
        ];
        if let Some(b) = bio {
            args.extend(["--biometric-file", b]);
        }
        wallet(&env, "w", &args)
    };

    // The owner, with a reading within the tolerance, gets the key back.
    std::fs::remove_file(&key_file).unwrap();
    let out = rebuild(&pw, Some(&near));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);

    // A wrong password, a reading beyond the tolerance, a missing method: refused.
    std::fs::remove_file(&key_file).unwrap();
    for (password, bio) in [(&wrong, Some(&near)), (&pw, Some(&far)), (&pw, None)] {
        let out = rebuild(password, bio.map(|b| b.as_str()));
        assert_eq!(out.status.code(), Some(18), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("the credentials do not match"),
            "{}",
            stderr(&out)
        );
        assert!(!key_file.exists());
    }
    // Three failures: now even the right credentials wait, across a restart too.
    for _ in 0..2 {
        let out = rebuild(&pw, Some(&near));
        assert_eq!(out.status.code(), Some(18));
        assert!(
            stderr(&out).contains("(429)") && stderr(&out).contains("try again in"),
            "{}",
            stderr(&out)
        );
        keyman.kill_and_restart();
    }
    assert!(!key_file.exists());
    let outcomes: Vec<_> = attempts(&env, &keyman)
        .into_iter()
        .map(|(what, outcome)| format!("{what} {outcome}"))
        .collect();
    assert_eq!(
        outcomes,
        [
            "enrol ok",
            "release ok",
            "release refused",
            "release refused",
            "release refused",
        ],
        "tries made to wait are counted, not logged"
    );
    // The log says who failed, never with what.
    let log = std::fs::read_to_string(keyman.data().with_extension("log")).unwrap();
    assert!(log.contains("escrow attempt refused"), "{log}");
    assert!(!log.contains("battery"), "a password reached the log");
}

#[test]
fn parallel_guesses_cost_three_checks_and_escrows_per_address_are_bounded() {
    let env = Env::new();
    let config = file(
        &env,
        "keyman.toml",
        "max_escrows = 10\nmax_escrows_per_address = 1\n",
    );
    let (vault, keyman) = services(&env, &["--keyman-config", &config]);
    init_wallet(&env, "w", &vault, &vault.key_hex());
    let pw = file(&env, "pw", PASSWORD);
    let recovery = escrow(&env, "w", &keyman, &["--owner-password-file", &pw]);
    let wallet_key = std::fs::read_to_string(&recovery)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("wallet = \"")
                .map(|w| w.trim_end_matches('"').to_string())
        })
        .unwrap();
    let body = serde_json::json!({
        "wallet": wallet_key,
        "credentials": { "password": "a guess" },
    })
    .to_string();
    let keyman = Arc::new(keyman);
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let (k, b) = (keyman.clone(), body.clone());
            std::thread::spawn(move || k.post("/v1/release", b.into_bytes()).0)
        })
        .collect();
    let mut statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    statuses.sort();
    let count = |s| statuses.iter().filter(|&&x| x == s).count();
    assert_eq!((count(403), count(429)), (3, 29), "{statuses:?}");

    // A second wallet from the same address is refused; the first keeps its escrow.
    init_wallet(&env, "other", &vault, &vault.key_hex());
    let out = wallet(
        &env,
        "other",
        &[
            "escrow",
            "--keyman",
            &keyman.url,
            "--keyman-fingerprint",
            &keyman.fingerprint,
            "--recovery-file",
            env.path("other.toml").to_str().unwrap(),
            "--owner-password-file",
            &pw,
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("this address enrolled its limit of 1 escrows"),
        "{}",
        stderr(&out)
    );
    let metrics = keyman
        .http()
        .get(format!("{}/metrics", keyman.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains("kura_keyman_escrows 1\n"), "{metrics}");
    // A body past the limit is refused before it is read whole.
    assert_eq!(keyman.post("/v1/release", vec![b' '; 80 * 1024]).0, 413);
}

#[test]
fn a_lost_wallet_gets_its_values_back_through_the_key_manager_and_neither_service_alone_has_the_key()
 {
    let env = Env::new();
    let (mut vault, keyman) = services(&env, &[]);
    init_wallet(&env, "lost", &vault, &vault.key_hex());
    let pw = file(&env, "pw", PASSWORD);
    let recovery = escrow(&env, "lost", &keyman, &["--owner-password-file", &pw]);
    let (_, first) = add_and_deposit(&env, "lost", "Metro card");
    let (_, second) = add_and_deposit(&env, "lost", "Film ticket");
    let holdings = env.path("holdings-backup.json");
    std::fs::copy(env.path("lost/holdings.json"), &holdings).unwrap();
    std::fs::remove_dir_all(env.path("lost")).unwrap();

    // The key manager holds one share, the vault another inside each value: each alone
    // rebuilds nothing, the two together would open the value.
    let escrowed: Vec<u8> = rusqlite::Connection::open(keyman.data().join("keyman.sqlite"))
        .unwrap()
        .query_row("SELECT share FROM escrows", [], |r| r.get(0))
        .unwrap();
    let payload: Vec<u8> = rusqlite::Connection::open(vault.data().join("vault.sqlite"))
        .unwrap()
        .query_row(
            "SELECT payload FROM records ORDER BY counter LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let reg = Registered::parse(&payload).unwrap();
    let at_vault = reg.vault_share.clone().unwrap();
    assert!(combine(std::slice::from_ref(&escrowed)).is_err());
    assert!(combine(std::slice::from_ref(&at_vault)).is_err());
    let mut guess = at_vault.clone();
    guess[1] ^= 1;
    let guessed = combine(&[escrowed.clone(), guess]).unwrap();
    assert!(reg.open(&reg.signer, &guessed).is_err());
    let both = combine(&[escrowed, at_vault]).unwrap();
    let opened = reg.open(&reg.signer, &both).unwrap();
    assert_eq!(serde_json::to_value(&opened).unwrap(), first);

    // Someone with credentials of their own and the owner's certificates gets nothing, and
    // nothing is retired.
    init_wallet(&env, "thief", &vault, &vault.key_hex());
    let theirs = file(&env, "theirs", "the thief's own password");
    let thief_recovery = escrow(&env, "thief", &keyman, &["--owner-password-file", &theirs]);
    let out = wallet(
        &env,
        "thief",
        &[
            "recover",
            "--recovery-file",
            &thief_recovery,
            "--holdings",
            holdings.to_str().unwrap(),
            "--owner-password-file",
            &theirs,
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not signed by this wallet"),
        "{}",
        stderr(&out)
    );

    // A new wallet on a new device.
    init_wallet(&env, "new", &vault, &vault.key_hex());
    let recover = |password: &str| {
        wallet(
            &env,
            "new",
            &[
                "recover",
                "--recovery-file",
                &recovery,
                "--holdings",
                holdings.to_str().unwrap(),
                "--owner-password-file",
                password,
            ],
        )
    };
    // The key manager alone, with the vault down, restores nothing and retires nothing.
    vault.kill();
    let out = recover(&pw);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("reaching the vault"),
        "{}",
        stderr(&out)
    );
    let wrong = file(&env, "wrong", "not the password");
    vault.kill_and_restart();
    let out = recover(&wrong);
    assert!(
        stderr(&out).contains("the credentials do not match"),
        "{}",
        stderr(&out)
    );
    let held = |v: &ValueService| {
        let m = v
            .http()
            .get(format!("{}/metrics", v.url))
            .send()
            .unwrap()
            .text()
            .unwrap();
        m.lines()
            .find_map(|l| l.strip_prefix("kura_vault_values_held "))
            .unwrap()
            .to_string()
    };
    assert_eq!(held(&vault), "2");

    let out = recover(&pw);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = wallet_ok(&env, "new", &["list"]);
    let records: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["record"].clone())
        .collect();
    assert_eq!(records, [first, second]);
    assert_eq!(held(&vault), "0");
    // Asked again, nothing comes twice.
    assert!(recover(&pw).status.success());
    assert_eq!(
        wallet_ok(&env, "new", &["list"]).as_array().unwrap().len(),
        2
    );
    // Nor into another wallet of the same owner: a restored value is a thing, not a copy.
    init_wallet(&env, "other", &vault, &vault.key_hex());
    let other = wallet_ok(
        &env,
        "other",
        &[
            "recover",
            "--recovery-file",
            &recovery,
            "--holdings",
            holdings.to_str().unwrap(),
            "--owner-password-file",
            &pw,
        ],
    );
    assert_eq!(other["restored"], serde_json::json!([]));
    assert_eq!(other["redeemed_already"], 2);
    assert!(
        !keyman.log().contains("horse"),
        "a password reached the log"
    );
}

#[test]
fn a_lost_value_key_is_rebuilt_from_the_key_manager_and_one_certificate() {
    let env = Env::new();
    let (vault, keyman) = services(&env, &[]);
    init_wallet(&env, "w", &vault, &vault.key_hex());
    let pw = file(&env, "pw", PASSWORD);
    let card = file(&env, "card", "JP-ID 1234-5678-9012 YAMADA TARO 1980-04-01");
    escrow(
        &env,
        "w",
        &keyman,
        &[
            "--owner-password-file",
            &pw,
            "--id-card-file",
            &card,
            "--any",
        ],
    );
    let (cert, record) = add_and_deposit(&env, "w", "Concert ticket");
    let key_file = env.path("w/value.key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();

    // Without its key the wallet does not withdraw (and the vault keeps the value).
    let out = wallet(&env, "w", &["withdraw", &cert.to_string()]);
    assert!(stderr(&out).contains("rebuild-key"), "{}", stderr(&out));

    // The identity card alone is enough under --any.
    let out = wallet(
        &env,
        "w",
        &[
            "rebuild-key",
            "--certificate",
            &cert.to_string(),
            "--id-card-file",
            &card,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);
    let shown = wallet_ok(&env, "w", &["show", &cert.to_string()]);
    assert_eq!(shown["record"], record);
}

/// The vault's records: (held, retired).
fn records(vault: &ValueService) -> (u64, u64) {
    rusqlite::Connection::open(vault.data().join("vault.sqlite"))
        .unwrap()
        .query_row(
            "SELECT COUNT(*) - COUNT(retired), COUNT(retired) FROM records",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

#[test]
fn rekeying_with_the_vault_killed_midway_leaves_every_record_under_one_key() {
    let env = Env::new();
    let (mut vault, keyman) = services(&env, &[]);
    let trust = ["--keyman-key".to_string(), keyman.key_hex()];
    init_wallet(&env, "w", &vault, &vault.key_hex());
    let pw = file(&env, "pw", PASSWORD);
    let recovery = escrow(&env, "w", &keyman, &["--owner-password-file", &pw]);
    let deposited: Vec<_> = ["Metro card", "Film ticket", "Concert ticket"]
        .iter()
        .map(|n| add_and_deposit(&env, "w", n))
        .collect();
    let old_key = std::fs::read(env.path("w/signing.key")).unwrap();
    let new_recovery = env.path("new-recovery.toml");
    let rekey = || {
        wallet(
            &env,
            "w",
            &[
                "rekey",
                "--recovery-file",
                &recovery,
                "--new-recovery-file",
                new_recovery.to_str().unwrap(),
                "--owner-password-file",
                &pw,
            ],
        )
    };

    // Killed inside its transaction, after two of three records: nothing changed.
    vault.restart_with(&[&trust[0], &trust[1], "--crash-at", "replace-item:2"]);
    let out = rekey();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("vault"), "{}", stderr(&out));
    assert_eq!(
        records(&vault),
        (3, 0),
        "every record still under the old key"
    );
    assert_eq!(std::fs::read(env.path("w/signing.key")).unwrap(), old_key);

    // Killed after its commit, before its answer: every record under the new key, and the
    // wallet does not have it yet.
    vault.restart_with(&[&trust[0], &trust[1], "--crash-at", "replace-commit"]);
    assert!(!rekey().status.success());
    assert_eq!(records(&vault), (3, 3), "every record under the new key");
    assert_eq!(std::fs::read(env.path("w/signing.key")).unwrap(), old_key);

    // Asked again, the key manager finishes the same replacement and delivers the keys.
    vault.restart_with(&[&trust[0], &trust[1]]);
    let out = rekey();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(records(&vault), (3, 3));
    assert_ne!(std::fs::read(env.path("w/signing.key")).unwrap(), old_key);
    assert!(!env.path("w/rekey.json").exists());
    for (cert, record) in &deposited {
        wallet_ok(&env, "w", &["withdraw", &cert.to_string()]);
        let shown = wallet_ok(&env, "w", &["show", &cert.to_string()]);
        assert_eq!(&shown["record"], record);
    }
    assert_eq!(records(&vault), (0, 6));

    // The key manager forgot what it delivered and retired the old escrow: the lost
    // device's key cannot enrol new credentials to collect anything.
    let db = rusqlite::Connection::open(keyman.data().join("keyman.sqlite")).unwrap();
    let (delivery, replacement): (String, Option<Vec<u8>>) = db
        .query_row("SELECT delivery, replacement FROM rekeys", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let new_key = std::fs::read(env.path("w/signing.key")).unwrap();
    assert!(!delivery.contains(&kura_core::id::hex(&new_key)));
    assert!(delivery.contains("\"signing_key\":\"\""), "{delivery}");
    assert!(replacement.is_none());
    let escrows: u64 = db
        .query_row("SELECT COUNT(*) FROM escrows", [], |r| r.get(0))
        .unwrap();
    assert_eq!(escrows, 1, "only the new wallet's");
    let thief = kura_wallet::sign::SigningKey::from_pkcs8(&old_key).unwrap();
    let enrol = kura_wallet::escrow::Enrol::sign(
        &thief,
        vec![1; 33],
        (
            kura_wallet::escrow::Credentials {
                password: Some("the thief's".into()),
                ..Default::default()
            },
            kura_wallet::escrow::Rule::All,
        ),
        kura_wallet::now_ms(),
    );
    let (status, body) = keyman.post("/v1/escrow", enrol.to_json());
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("re-keyed"));

    // The new recovery file and the key manager's new share rebuild the new key.
    let key = std::fs::read_to_string(env.path("w/value.key")).unwrap();
    std::fs::remove_file(env.path("w/value.key")).unwrap();
    let out = wallet(
        &env,
        "w",
        &[
            "rebuild-key",
            "--recovery-file",
            new_recovery.to_str().unwrap(),
            "--owner-password-file",
            &pw,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(env.path("w/value.key")).unwrap(),
        key
    );
}

#[test]
fn a_value_whose_answer_is_lost_after_the_vault_retired_it_is_asked_for_again() {
    let env = Env::new();
    let (mut vault, keyman) = services(&env, &[]);
    let trust = ["--keyman-key".to_string(), keyman.key_hex()];
    init_wallet(&env, "w", &vault, &vault.key_hex());
    let pw = file(&env, "pw", PASSWORD);
    let recovery = escrow(&env, "w", &keyman, &["--owner-password-file", &pw]);
    let (mine, record) = add_and_deposit(&env, "w", "Metro card");
    let (_, lost) = add_and_deposit(&env, "w", "Film ticket");
    let holdings = env.path("holdings-backup.json");
    std::fs::copy(env.path("w/holdings.json"), &holdings).unwrap();

    // The wallet's withdrawal: the vault dies after its commit, before its answer.
    vault.restart_with(&[&trust[0], &trust[1], "--crash-at", "withdraw-commit"]);
    let out = wallet(&env, "w", &["withdraw", &mine.to_string()]);
    assert!(!out.status.success());
    assert_eq!(records(&vault), (1, 1), "retired at the vault");
    vault.restart_with(&[&trust[0], &trust[1]]);
    wallet_ok(&env, "w", &["withdraw", &mine.to_string()]);
    let shown = wallet_ok(&env, "w", &["show", &mine.to_string()]);
    assert_eq!(shown["record"], record);

    // The key manager's emergency withdrawal for a lost wallet: the same.
    init_wallet(&env, "new", &vault, &vault.key_hex());
    let recover = || {
        wallet(
            &env,
            "new",
            &[
                "recover",
                "--recovery-file",
                &recovery,
                "--holdings",
                holdings.to_str().unwrap(),
                "--owner-password-file",
                &pw,
            ],
        )
    };
    vault.restart_with(&[&trust[0], &trust[1], "--crash-at", "withdraw-commit"]);
    assert!(!recover().status.success());
    assert_eq!(records(&vault), (0, 2));
    vault.restart_with(&[&trust[0], &trust[1]]);
    let out = recover();
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = wallet_ok(&env, "new", &["list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["record"], lost);
}

#[test]
fn a_lost_passphrase_comes_back_through_the_key_manager_and_one_share_file() {
    let env = Env::new();
    let code = env.init();
    let keyman = ValueService::keyman(&env, &[]);
    let pw = file(&env, "owner-pw", PASSWORD);
    let (home, away) = (env.path("share-home.toml"), env.path("share-away.toml"));
    env.ok(&[
        "key",
        "escrow",
        "--keyman",
        &keyman.url,
        "--keyman-fingerprint",
        &keyman.fingerprint,
        "--share-file",
        home.to_str().unwrap(),
        "--share-file",
        away.to_str().unwrap(),
        "--owner-password-file",
        &pw,
    ]);
    // The escrowed code is a second one: the code printed at init still opens.
    let kinds: Vec<_> = env
        .json(&["key", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "recovery code").count(),
        2,
        "{kinds:?}"
    );
    let codes = file(&env, "code", &code);
    assert!(
        env.run(&["--recovery-code-file", &codes, "snapshots"])
            .status
            .success()
    );
    // The provider's storage holds no share.
    let share = std::fs::read_to_string(&home).unwrap();
    let share = share
        .lines()
        .find_map(|l| l.strip_prefix("share = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let stored = std::process::Command::new("grep")
        .args(["-r", &share])
        .arg(&env.repo)
        .output()
        .unwrap();
    assert!(!stored.status.success(), "a share is in the repository");

    // The passphrase is lost. A wrong owner password gets nothing.
    let wrong = file(&env, "wrong", "not it");
    let new = file(&env, "new-pw", "a brand new passphrase");
    let recover = |password: &str, share: &Path| {
        env.run(&[
            "key",
            "recover",
            "--share-file",
            share.to_str().unwrap(),
            "--owner-password-file",
            password,
            "--new-password-file",
            &new,
        ])
    };
    let out = recover(&wrong, &away);
    assert!(
        stderr(&out).contains("the credentials do not match"),
        "{}",
        stderr(&out)
    );
    let out = recover(&pw, &away);
    assert!(out.status.success(), "{}", stderr(&out));
    let with = |passphrase: &str| {
        env.kura()
            .args(["--repo"])
            .arg(&env.repo)
            .args(["snapshots"])
            .env("KURA_PASSWORD", passphrase)
            .env("KURA_INSECURE_FAST_KDF", "1")
            .output()
            .unwrap()
    };
    assert!(with("a brand new passphrase").status.success());
    assert!(
        !with("correct horse").status.success(),
        "the lost one is retired"
    );

    // A card common key escrowed the same way comes back byte for byte.
    let common = file(&env, "common.key", &format!("{}\n", "ab".repeat(32)));
    let card_share = env.path("card-share.toml");
    env.ok(&[
        "key",
        "escrow",
        "--file",
        &common,
        "--keyman",
        &keyman.url,
        "--keyman-fingerprint",
        &keyman.fingerprint,
        "--share-file",
        card_share.to_str().unwrap(),
        "--owner-password-file",
        &pw,
    ]);
    let back = env.path("common-back.key");
    env.ok(&[
        "key",
        "recover",
        "--share-file",
        card_share.to_str().unwrap(),
        "--file",
        back.to_str().unwrap(),
        "--owner-password-file",
        &pw,
    ]);
    assert_eq!(
        std::fs::read_to_string(back).unwrap(),
        std::fs::read_to_string(&common).unwrap()
    );
}
