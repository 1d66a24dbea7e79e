//! The passphrase, the recovery code and devices: change, replace, retire, remove.

use std::fs;

use crate::fixture::*;

/// A repository with one small snapshot; its recovery code.
fn repository() -> (Env, String) {
    let env = Env::new();
    let code = env.init();
    let src = env.path("src");
    make_tree(&src, 4, 3);
    env.backup(&[src.to_str().unwrap()]);
    (env, code)
}

fn snapshots_with_password(env: &Env, password: &str) -> std::process::Output {
    env.cmd(&["snapshots"])
        .env("KURA_PASSWORD", password)
        .output()
        .unwrap()
}

#[test]
fn a_changed_passphrase_replaces_the_old_one() {
    let (env, _) = repository();
    let new = env.path("new.pw");
    fs::write(&new, "a new passphrase\n").unwrap();
    let said = env.ok(&[
        "key",
        "passwd",
        "--new-password-file",
        new.to_str().unwrap(),
    ]);
    assert!(said.contains("passphrase changed"), "{said}");
    let old = snapshots_with_password(&env, "correct horse");
    assert_eq!(old.status.code(), Some(11), "{}", stderr(&old));
    let now = snapshots_with_password(&env, "a new passphrase");
    assert!(now.status.success(), "{}", stderr(&now));
    let keys = env
        .cmd(&["key", "list", "--json"])
        .env("KURA_PASSWORD", "a new passphrase")
        .output()
        .unwrap();
    let keys = parse_json(&String::from_utf8_lossy(&keys.stdout));
    let kinds: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 2, "{keys}");
    assert!(kinds.contains(&"passphrase") && kinds.contains(&"recovery code"));
}

#[test]
fn a_lost_passphrase_is_replaced_with_the_recovery_code() {
    let (env, code) = repository();
    let out = env
        .cmd(&["key", "passwd"])
        .env_remove("KURA_PASSWORD")
        .env("KURA_RECOVERY_CODE", &code)
        .env("KURA_NEW_PASSWORD", "found again")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        snapshots_with_password(&env, "correct horse").status.code(),
        Some(11)
    );
    assert!(
        snapshots_with_password(&env, "found again")
            .status
            .success()
    );
}

#[test]
fn an_empty_new_passphrase_is_refused() {
    let (env, _) = repository();
    let out = env
        .cmd(&["key", "passwd"])
        .env("KURA_NEW_PASSWORD", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("an empty passphrase is not allowed"));
    assert!(
        snapshots_with_password(&env, "correct horse")
            .status
            .success()
    );
}

#[test]
fn a_new_recovery_code_retires_the_old_one() {
    let (env, old) = repository();
    let out = env.cmd(&["key", "recovery-code", "-q"]).output().unwrap();
    assert!(out.status.success());
    let err = stderr(&out);
    let new = err.trim().rsplit(' ').next().unwrap().to_string();
    assert!(err.contains("new recovery code"), "even -q shows it: {err}");
    assert_ne!(new, old);
    let with_code = |code: &str| {
        env.cmd(&["snapshots"])
            .env_remove("KURA_PASSWORD")
            .env("KURA_RECOVERY_CODE", code)
            .output()
            .unwrap()
    };
    let o = with_code(&old);
    assert_eq!(o.status.code(), Some(11));
    assert!(stderr(&o).contains("was replaced"), "{}", stderr(&o));
    assert!(with_code(&new).status.success());
}

#[test]
fn a_removed_device_can_no_longer_add_data_but_what_it_stored_stays() {
    let (env, _) = repository();
    let laptop = env.path("laptop-state");
    run_ok(env.cmd_as(&laptop, &["device", "add", "--name", "laptop"]));
    let work = env.path("work");
    make_tree(&work, 3, 9);
    run_ok(env.cmd_as(&laptop, &["backup", work.to_str().unwrap()]));

    env.ok(&["device", "rename", "laptop", "old laptop"]);
    let said = env.ok(&["device", "remove", "old laptop"]);
    assert!(said.contains("kura key passwd"), "{said}");

    let out = env
        .cmd_as(&laptop, &["backup", work.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("was removed from the repository"),
        "{}",
        stderr(&out)
    );

    let devices = env.json(&["device", "list"]);
    let laptop_row = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "old laptop")
        .unwrap();
    assert!(laptop_row["removed"].is_string(), "{devices}");

    let t = env.path("t");
    env.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(contents(&work), contents(&restored(&t, &work)));
}

#[test]
fn a_device_named_twice_must_be_given_by_id() {
    let (env, _) = repository();
    let a = env.path("a-state");
    let b = env.path("b-state");
    run_ok(env.cmd_as(&a, &["device", "add", "--name", "vm"]));
    run_ok(env.cmd_as(&b, &["device", "add", "--name", "vm"]));
    let out = env.run(&["device", "remove", "vm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("more than one device"),
        "{}",
        stderr(&out)
    );
}
