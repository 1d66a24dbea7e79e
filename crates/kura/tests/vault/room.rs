//! A wallet short of memory, through a real vault: each policy when a value arriving or
//! coming back does not fit, and auto-backup by the conditions the owner set.

use super::{wallet, wallet_ok};
use crate::fixture::{Env, ValueService, stderr};

fn init(env: &Env, vault: &ValueService, capacity: &str) {
    wallet_ok(
        env,
        "w",
        &[
            "init",
            "--capacity",
            capacity,
            "--vault",
            &vault.url,
            "--vault-fingerprint",
            &vault.fingerprint,
            "--vault-key",
            &vault.key_hex(),
        ],
    );
}

/// `kura wallet add` of a value of about 1530 bytes (its certificate takes about 280), with
/// `extra` arguments.
fn add(env: &Env, kind: &str, name: &str, extra: &[&str]) -> std::process::Output {
    let remarks = "x".repeat(1400);
    let mut args = vec!["add", "--kind", kind, "--name", name, "--remarks", &remarks];
    args.extend(extra);
    wallet(env, "w", &args)
}

fn kinds(env: &Env) -> Vec<String> {
    wallet_ok(env, "w", &["list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|h| format!("{} {}", h["id"], h["type"].as_str().unwrap()))
        .collect()
}

#[test]
fn when_a_value_does_not_fit_each_policy_aborts_backs_up_or_deposits_what_was_picked() {
    let env = Env::new();
    let vault = ValueService::vault(&env, &[]);
    // Two values and 800 bytes to spare: room for a certificate or two, not a third value.
    init(&env, &vault, "3850");
    for (kind, name) in [("movie-ticket", "Film"), ("concert-ticket", "Gala")] {
        assert!(add(&env, kind, name, &[]).status.success());
    }

    // abort, the default: a message, and nothing changes.
    let out = add(&env, "prepaid", "Metro", &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not enough room in the wallet"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("on-shortage: abort"),
        "{}",
        stderr(&out)
    );
    assert_eq!(kinds(&env), ["1 value", "2 value"]);

    // choose: with nothing picked (and no terminal to ask on) it says what can be picked;
    // with --deposit it deposits those and goes on.
    let out = add(&env, "prepaid", "Metro", &["--on-shortage", "choose"]);
    assert!(
        stderr(&out).contains("--deposit IDS (values: 1 Film"),
        "{}",
        stderr(&out)
    );
    let out = add(
        &env,
        "prepaid",
        "Metro",
        &["--on-shortage", "choose", "--deposit", "2"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(kinds(&env), ["1 value", "2 certificate", "3 value"]);

    // backup: the conditions (here: film tickets) choose what to deposit.
    wallet_ok(
        &env,
        "w",
        &[
            "conditions",
            "--unset",
            "held-days,ending-after-days,over-free-share",
            "--kinds",
            "movie-ticket",
        ],
    );
    let out = add(&env, "prepaid", "Bus", &["--on-shortage", "backup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        kinds(&env),
        ["1 certificate", "2 certificate", "3 value", "4 value"]
    );
    // When what they choose would not free enough, nothing is deposited.
    let out = add(&env, "prepaid", "Tram", &["--on-shortage", "backup"]);
    assert!(
        stderr(&out).contains("would not free enough"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        kinds(&env),
        ["1 certificate", "2 certificate", "3 value", "4 value"]
    );

    // A value coming back that does not fit: the vault has retired it, so the wallet keeps
    // it aside, and the next withdraw takes it from there.
    let out = wallet(&env, "w", &["withdraw", "2"]);
    assert!(
        stderr(&out).contains("withdraw again to take it in"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_dir(env.path("w/withdrawn")).unwrap().count(),
        1
    );
    // Under the wallet's own policy setting it makes room.
    wallet_ok(
        &env,
        "w",
        &[
            "conditions",
            "--kinds",
            "prepaid",
            "--on-shortage",
            "backup",
        ],
    );
    let out = wallet(&env, "w", &["withdraw", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = kinds(&env);
    assert!(listed.contains(&"2 value".to_string()), "{listed:?}");
    assert!(listed.iter().filter(|k| k.ends_with("certificate")).count() >= 2);
    let gala = wallet_ok(&env, "w", &["show", "2"]);
    assert_eq!(gala["record"]["name"], "Gala");
    assert_eq!(
        std::fs::read_dir(env.path("w/withdrawn")).unwrap().count(),
        0
    );
}

#[test]
fn auto_backup_deposits_what_the_conditions_choose_and_waits_for_its_period() {
    let env = Env::new();
    let vault = ValueService::vault(&env, &[]);
    init(&env, &vault, "16384");
    let tomorrow = jiff::Zoned::now().date().tomorrow().unwrap().to_string();
    assert!(
        add(
            &env,
            "movie-ticket",
            "Tonight",
            &["--valid-until", &tomorrow]
        )
        .status
        .success()
    );
    assert!(
        add(
            &env,
            "concert-ticket",
            "Next year",
            &["--valid-until", "2031-01-31"]
        )
        .status
        .success()
    );
    let shown = wallet_ok(
        &env,
        "w",
        &[
            "conditions",
            "--unset",
            "held-days,over-free-share",
            "--every-days",
            "7",
        ],
    );
    assert_eq!(shown["conditions"]["ending_after_days"], 60);
    assert_eq!(shown["conditions"]["rule"], "any");

    let run = wallet_ok(&env, "w", &["auto-backup", "--when-due"]);
    assert_eq!(
        run["deposited"],
        serde_json::json!([2]),
        "only the value not needed soon"
    );
    assert_eq!(kinds(&env), ["1 value", "2 certificate"]);
    let run = wallet_ok(&env, "w", &["auto-backup", "--when-due"]);
    assert_eq!(run["due"], false);
    // On request it runs whenever asked; nothing else meets the conditions.
    let run = wallet_ok(&env, "w", &["auto-backup"]);
    assert_eq!(run["deposited"], serde_json::json!([]));
}
