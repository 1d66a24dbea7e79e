//! Notices mailed through a real SMTP relay, and kept in the outbox while it is down.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use crate::fixture::*;

/// A service mailing through a real relay every second; alice (with an address) and bob
/// (without one) as members; a small tree to back up.
fn mailing() -> (Member, Client, MailServer, PathBuf) {
    let env = Env::new();
    let relay = MailServer::start(&env.path("maildir"));
    let svc = Service::options(&env)
        .config(&format!(
            "[mail]\nrelay = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n\
             from = \"Kura <kura@example.test>\"\nevery_secs = 1\n",
            relay.port
        ))
        .start();
    let pw = svc.password_file("alice", "alice password");
    svc.admin(&[
        "user",
        "add",
        "alice",
        "--login-password-file",
        pw.to_str().unwrap(),
        "--email",
        "alice@example.test",
    ]);
    svc.contract("alice", &[]);
    let alice = Member::on_existing(env, svc, "alice");
    let bob = alice.another("bob", "bob password");
    let src = alice.path("src");
    make_tree(&src, 10, 21);
    (alice, bob, relay, src)
}

/// A member's first backup.
fn first_backup(member: &Client, src: &std::path::Path) {
    member.init();
    member.backup(src);
}

#[test]
fn a_header_cannot_be_smuggled_into_an_address() {
    let env = Env::new();
    let op = Operator::new(&env, "service", None);
    op.add_user("alice", "alice password");
    let bad = op.admin_run(&["user", "email", "alice", "alice@example.test\r\nBcc: x@y.z"]);
    assert!(!bad.status.success(), "a header cannot be smuggled in");
}

#[test]
fn a_notice_is_mailed_through_a_real_relay() {
    let (alice, _, relay, src) = mailing();
    first_backup(&alice, &src);
    wait_until(
        Duration::from_secs(120),
        "the first notice to be mailed",
        || relay.delivered().len() == 1,
    );
    let mail = &relay.delivered()[0];
    assert!(mail.contains("To: alice@example.test"), "{mail}");
    assert!(
        mail.contains("Subject: Storage conditions of your backup"),
        "{mail}"
    );
    assert!(mail.contains("demo-east (region demo-east): ok"), "{mail}");
    // The relay has it before the service files it as sent.
    wait_until(
        Duration::from_secs(30),
        "the sent notice to leave the outbox",
        || alice.svc.queued_mail() == 0,
    );
    let sent = fs::read_dir(alice.svc.data.join("outbox/sent")).unwrap();
    assert_eq!(sent.count(), 1);
}

#[test]
fn notices_wait_in_the_outbox_while_the_relay_is_down() {
    // They go out when it returns; one to a member without an address stays there.
    let (alice, bob, mut relay, src) = mailing();
    first_backup(&alice, &src);
    wait_until(
        Duration::from_secs(120),
        "the first notice to be mailed",
        || relay.delivered().len() == 1,
    );
    relay.stop();
    first_backup(&bob, &src);
    alice.backup(&src);
    // Two sending runs meet the relay down.
    alice.svc.await_task_runs("mail", 2);
    assert_eq!(alice.svc.queued_mail(), 2);
    assert_eq!(relay.delivered().len(), 1);
    relay.restart();
    wait_until(
        Duration::from_secs(120),
        "the queued notice to be mailed",
        || relay.delivered().len() == 2,
    );
    assert!(
        relay
            .delivered()
            .iter()
            .all(|m| m.contains("To: alice@example.test"))
    );
    // Later sending runs leave bob's notice alone (he has no address).
    alice.svc.await_task_runs("mail", 2);
    assert_eq!(
        alice.svc.queued_mail(),
        1,
        "bob's notice stays: he has no address"
    );
    let messages = bob.json(&["messages"]);
    assert_eq!(messages.as_array().unwrap().len(), 1, "{messages}");
}
