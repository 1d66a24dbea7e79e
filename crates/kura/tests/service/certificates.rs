//! Logging in with a client certificate (mutual TLS) instead of a password.

use std::fs;
use std::path::{Path, PathBuf};

use kura_repo::{Backend, FileType};

use crate::fixture::*;

/// Carol and mallory at a service, and a certificate made with `kura cert create` for carol's
/// laptop (not registered yet); where it is and its fingerprint.
fn with_a_certificate() -> (Member, PathBuf, String) {
    let carol = Member::start("carol");
    carol.another("mallory", "mallory password");
    let certs = carol.path("carol-cert");
    let mut c = carol.env.kura();
    c.args([
        "cert",
        "create",
        "--json",
        "--name",
        "carol-laptop",
        "--out",
    ])
    .arg(&certs);
    let made = parse_json(&run_ok(c));
    let fp = made["fingerprint"].as_str().unwrap().to_string();
    (carol, certs, fp)
}

/// A command that logs in with the client certificate in `dir`: no user, no password.
fn cert_client(member: &Member, dir: &Path, args: &[&str]) -> std::process::Command {
    let device = member.device(&member.path("state-cert"));
    let mut c = device.bare_cmd(args);
    c.arg("--client-cert")
        .arg(dir.join("client.crt"))
        .arg("--client-key")
        .arg(dir.join("client.key"))
        .env("KURA_PASSWORD", "encryption passphrase");
    c
}

#[test]
fn an_unregistered_certificate_is_refused_with_the_reason() {
    let (carol, certs, _) = with_a_certificate();
    let out = cert_client(&carol, &certs, &["init"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no registered client certificate"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_certificate_stands_for_one_user_only() {
    let (carol, _, fp) = with_a_certificate();
    carol.svc.admin(&["user", "cert", "carol", &fp]);
    let out = carol.svc.admin_run(&["user", "cert", "mallory", &fp]);
    assert!(!out.status.success(), "one certificate, one user");
    assert!(stderr(&out).contains("another user"), "{}", stderr(&out));
}

/// [`with_a_certificate`], registered for carol, and a backup of a small tree made with it.
fn backed_up_with_a_certificate() -> (Member, PathBuf, String, PathBuf) {
    let (carol, certs, fp) = with_a_certificate();
    carol.svc.admin(&["user", "cert", "carol", &fp]);
    let src = carol.path("src");
    make_tree(&src, 8, 21);
    run_ok(cert_client(&carol, &certs, &["init"]));
    run_ok(cert_client(
        &carol,
        &certs,
        &["backup", src.to_str().unwrap()],
    ));
    (carol, certs, fp, src)
}

#[test]
fn a_registered_certificate_logs_in_without_a_password() {
    let (carol, certs, _, src) = backed_up_with_a_certificate();
    let t = carol.path("t");
    run_ok(cert_client(
        &carol,
        &certs,
        &["restore", "latest", "--target", t.to_str().unwrap()],
    ));
    assert_eq!(contents(&src), contents(&restored(&t, &src)));
    // The certificate stands for carol: her password sees the same repository, mallory's not.
    assert_eq!(carol.backend().list(FileType::Snapshot).unwrap().len(), 1);
    let mallory = carol.svc.backend("mallory", "mallory password").unwrap();
    assert!(mallory.list(FileType::Snapshot).unwrap().is_empty());
    let row = carol.svc.user("carol");
    assert!(row["accesses"].as_u64().unwrap() >= 3, "{row}");
}

#[test]
fn a_withdrawn_certificate_no_longer_logs_in() {
    let (carol, certs, fp, _) = backed_up_with_a_certificate();
    let fp_upper = fp.to_ascii_uppercase();
    carol
        .svc
        .admin(&["user", "cert", "carol", &fp_upper, "--remove"]);
    let out = cert_client(&carol, &certs, &["snapshots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no registered client certificate"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_client_key_is_a_clear_error() {
    // With a certificate registered by its file rather than its fingerprint.
    let (carol, _, _) = with_a_certificate();
    let other = carol.path("other-cert");
    let mut c = carol.env.kura();
    c.args(["cert", "create", "--out"]).arg(&other);
    run_ok(c);
    carol.svc.admin(&[
        "user",
        "cert",
        "mallory",
        "--cert",
        other.join("client.crt").to_str().unwrap(),
    ]);
    fs::remove_file(other.join("client.key")).unwrap();
    let out = cert_client(&carol, &other, &["snapshots"])
        .output()
        .unwrap();
    assert!(stderr(&out).contains("client key"), "{}", stderr(&out));
}
