//! The vault (docs/requirements/value-vault.md requirements 2 to 4) through a real
//! `kura vault serve` over HTTPS: deposits answered with signed certificates the wallet checks,
//! each certificate redeemed once whatever the concurrency, refusals that lose nothing.

use std::sync::Arc;

use kura_core::crypto::Key;
use kura_wallet::certificate::{Certificate, Purpose, Withdrawal};
use kura_wallet::record::{DEFAULT_DIGEST, Field, ValueRecord};
use kura_wallet::registered::Registered;
use kura_wallet::sign::SigningKey;

use crate::fixture::{Env, ValueService, parse_json, stderr};

mod keyman;
mod room;

fn ticket(n: u64) -> ValueRecord {
    ValueRecord {
        kind: "concert-ticket".into(),
        name: format!("Winter Gala, seat {n}"),
        unit_price: 6500,
        quantity: 1,
        total: 6500,
        place: "Hall 3".into(),
        validity: None,
        balance: 0,
        remarks: String::new(),
    }
}

/// A wallet's deposit: the value sealed and signed, the certificate checked.
fn deposit(
    vault: &ValueService,
    wallet: &SigningKey,
    key: &Key,
    n: u64,
) -> (Registered, Certificate) {
    let sent = Registered::seal(
        "w1",
        &ticket(n),
        &DEFAULT_DIGEST,
        (&[1; 16], key),
        wallet,
        None,
    );
    let (status, body) = vault.post("/v1/deposit", sent.to_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let cert = Certificate::parse(&body).unwrap();
    cert.confirms(&vault.key, &sent).unwrap();
    (sent, cert)
}

/// A withdrawal request of its own (a fresh nonce).
fn withdrawal(cert: &Certificate, signer: &SigningKey) -> Vec<u8> {
    let nonce = kura_core::crypto::random_bytes();
    Withdrawal::sign(Purpose::Withdraw, cert, (nonce, 1), signer).to_bytes()
}

#[test]
fn a_deposited_value_is_withdrawn_once_by_32_concurrent_requests() {
    let env = Env::new();
    let vault = Arc::new(ValueService::vault(&env, &[]));
    let (wallet, key) = (SigningKey::generate(), Key::random());
    let (sent, cert) = deposit(&vault, &wallet, &key, 1);
    // What the wallet holds can be listed from the certificate's digest alone.
    assert_eq!(cert.digest.get(Field::Name), Some("Winter Gala, seat 1"));
    // 32 requests of their own (each its own nonce) at once.
    let bodies: Vec<_> = (0..32).map(|_| withdrawal(&cert, &wallet)).collect();
    let handles: Vec<_> = bodies
        .iter()
        .map(|b| {
            let (v, b) = (vault.clone(), b.clone());
            std::thread::spawn(move || v.post("/v1/withdraw", b))
        })
        .collect();
    let answers: Vec<(u16, Vec<u8>)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let won: Vec<&Vec<u8>> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(won.len(), 1, "exactly one withdrawal succeeds");
    for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(*status, 409);
        assert!(String::from_utf8_lossy(body).contains("redeemed already"));
    }
    // The winning request replayed byte for byte gets nothing; tried again with a higher
    // attempt (its answer lost on the way) it gets the same value; the vault still holds it
    // retired once.
    let winner = answers.iter().position(|(s, _)| *s == 200).unwrap();
    let (status, body) = vault.post("/v1/withdraw", bodies[winner].clone());
    assert_eq!(status, 409);
    assert!(String::from_utf8_lossy(&body).contains("replayed"));
    let nonce = Withdrawal::parse(&bodies[winner]).unwrap().nonce;
    let retry = Withdrawal::sign(Purpose::Withdraw, &cert, (nonce, 2), &wallet);
    let again = vault.post("/v1/withdraw", retry.to_bytes());
    assert_eq!((again.0, &again.1), (200, won[0]));
    let back = Registered::parse(won[0]).unwrap();
    assert_eq!(back, sent);
    assert_eq!(back.open(&wallet.public(), &key).unwrap(), ticket(1));
    let metrics = vault
        .http()
        .get(format!("{}/metrics", vault.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains("kura_vault_values_held 0"), "{metrics}");
    assert!(metrics.contains("kura_vault_values_retired 1"), "{metrics}");
    assert!(
        metrics.contains("kura_vault_withdrawals_total 2"),
        "answers given, the repeat included: {metrics}"
    );
}

#[test]
fn forged_altered_stolen_and_oversized_requests_are_refused_and_the_value_stays() {
    let env = Env::new();
    // The quota from a config file (a flag would override it).
    let config = env.path("vault.toml");
    std::fs::write(
        &config,
        "max_values_per_wallet = 2\nkeep_retired_days = 30\n",
    )
    .unwrap();
    let vault = ValueService::vault(&env, &["--vault-config", config.to_str().unwrap()]);
    let (wallet, key) = (SigningKey::generate(), Key::random());
    let (sent, cert) = deposit(&vault, &wallet, &key, 1);

    let forged = Certificate::issue(&sent, cert.counter, &SigningKey::generate());
    assert_eq!(
        vault.post("/v1/withdraw", withdrawal(&forged, &wallet)).0,
        400
    );
    let mut altered = cert.clone();
    altered.counter += 1;
    assert_eq!(
        vault.post("/v1/withdraw", withdrawal(&altered, &wallet)).0,
        400
    );
    let thief = SigningKey::generate();
    let (status, body) = vault.post("/v1/withdraw", withdrawal(&cert, &thief));
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("not signed by the wallet"));
    assert_eq!(vault.post("/v1/withdraw", vec![0; 80 * 1024]).0, 413);
    let mut tampered = sent.to_bytes();
    let n = tampered.len();
    tampered[n - 90] ^= 1;
    assert_eq!(
        vault.post("/v1/deposit", tampered).0,
        400,
        "a deposit whose signature fails"
    );

    deposit(&vault, &wallet, &key, 2);
    let third = Registered::seal("w1", &ticket(3), &[], (&[1; 16], &key), &wallet, None);
    let (status, body) = vault.post("/v1/deposit", third.to_bytes());
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));

    let (status, body) = vault.post("/v1/withdraw", withdrawal(&cert, &wallet));
    assert_eq!(
        status, 200,
        "nothing refused above cost the owner the value"
    );
    assert_eq!(Registered::parse(&body).unwrap(), sent);
}

#[test]
fn a_vault_killed_and_restarted_keeps_its_key_and_every_certificate_it_issued() {
    let env = Env::new();
    let mut vault = ValueService::vault(&env, &[]);
    let (wallet, key) = (SigningKey::generate(), Key::random());
    let deposits: Vec<_> = (0..5).map(|n| deposit(&vault, &wallet, &key, n)).collect();
    let before = (vault.key, vault.fingerprint.clone());
    vault.kill_and_restart();
    assert_eq!((vault.key, vault.fingerprint.clone()), before);
    for (sent, cert) in &deposits {
        let (status, body) = vault.post("/v1/withdraw", withdrawal(cert, &wallet));
        assert_eq!(status, 200);
        assert_eq!(&Registered::parse(&body).unwrap(), sent);
    }
}

/// `kura wallet ARGS --json` for the wallet in `dir`.
fn wallet(env: &Env, dir: &str, args: &[&str]) -> std::process::Output {
    env.kura()
        .args(["wallet", "--wallet-dir"])
        .arg(env.path(dir))
        .args(args)
        .arg("--json")
        .output()
        .unwrap()
}

fn wallet_ok(env: &Env, dir: &str, args: &[&str]) -> serde_json::Value {
    let out = wallet(env, dir, args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    parse_json(&String::from_utf8(out.stdout).unwrap())
}

fn init_wallet(env: &Env, dir: &str, vault: &ValueService, key: &str) {
    wallet_ok(
        env,
        dir,
        &[
            "init",
            "--vault",
            &vault.url,
            "--vault-fingerprint",
            &vault.fingerprint,
            "--vault-key",
            key,
        ],
    );
}

#[test]
fn a_wallet_deposits_a_value_lists_it_offline_and_withdraws_it_back() {
    let env = Env::new();
    let mut vault = ValueService::vault(&env, &[]);
    init_wallet(&env, "w", &vault, &kura_core::id::hex(&vault.key));
    let ticket = wallet_ok(
        &env,
        "w",
        &[
            "add",
            "--kind",
            "concert-ticket",
            "--name",
            "Winter Gala",
            "--quantity",
            "2",
            "--unit-price",
            "6500",
            "--total",
            "13000",
            "--place",
            "Hall 3",
            "--valid-from",
            "2026-12-20",
            "--valid-until",
            "2026-12-24",
        ],
    );
    let id = ticket["id"].as_u64().unwrap().to_string();
    wallet_ok(
        &env,
        "w",
        &[
            "add",
            "--kind",
            "prepaid",
            "--name",
            "Metro",
            "--balance",
            "3000",
        ],
    );
    let before = wallet_ok(&env, "w", &["show", &id]);
    let dep = wallet_ok(&env, "w", &["deposit", &id]);
    assert_eq!(dep["kept_value"], false);

    // Listed from the certificate's digest alone: the vault is down.
    vault.kill();
    let certs = wallet_ok(&env, "w", &["list", "--offline"]);
    let certs = certs.as_array().unwrap();
    assert_eq!(certs.len(), 1);
    let fields: Vec<&str> = certs[0]["digest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["value"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"Winter Gala") && fields.contains(&"Hall 3"),
        "{fields:?}"
    );
    let soon = wallet_ok(&env, "w", &["list", "--ending-within", "36500"]);
    assert_eq!(
        soon.as_array().unwrap().len(),
        1,
        "its validity is in the digest"
    );
    let out = wallet(&env, "w", &["withdraw", &id]);
    assert!(!out.status.success(), "no vault, no withdrawal");
    assert_eq!(
        wallet_ok(&env, "w", &["list", "--certificates"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    vault.kill_and_restart();
    wallet_ok(&env, "w", &["withdraw", &id]);
    assert_eq!(
        wallet_ok(&env, "w", &["show", &id]),
        before,
        "the value is back intact"
    );
    let again = wallet(&env, "w", &["withdraw", &id]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("not a certificate"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn a_deposit_whose_certificate_does_not_confirm_is_aborted_and_the_value_stays() {
    let env = Env::new();
    let vault = ValueService::vault(&env, &[]);
    // The wallet trusts another vault key than this vault's.
    let other = kura_core::id::hex(&SigningKey::generate().public());
    init_wallet(&env, "w", &vault, &other);
    let v = wallet_ok(
        &env,
        "w",
        &[
            "add",
            "--kind",
            "prepaid",
            "--name",
            "Metro",
            "--balance",
            "3000",
        ],
    );
    let id = v["id"].as_u64().unwrap().to_string();
    let out = wallet(&env, "w", &["deposit", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("deposit is aborted"),
        "{}",
        stderr(&out)
    );
    let held = wallet_ok(&env, "w", &["list"]);
    assert_eq!(held.as_array().unwrap().len(), 1);
    assert_eq!(held[0]["type"], "value", "the value stays in the wallet");
}
