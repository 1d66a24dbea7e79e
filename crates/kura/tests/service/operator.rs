//! The operator's hold on accounts: a leaked password is replaced and stops working at once,
//! sessions can be ended, an append-only user's devices cannot destroy their backups, and a
//! removed user's data is deleted only when the operator says so.

use std::fs;

use crate::fixture::*;

const MAINTENANCE: &str = "kept off the devices";

/// Dave with two snapshots of a small tree.
fn dave() -> Member {
    let dave = Member::start("dave");
    let src = dave.path("src");
    make_tree(&src, 4, 40);
    dave.init();
    dave.backup(&src);
    fs::write(src.join("new"), b"more").unwrap();
    dave.backup(&src);
    dave
}

fn login_status(m: &Member, password: &str) -> u16 {
    m.svc
        .http()
        .post(format!("{}/v1/login", m.svc.url))
        .body(serde_json::json!({"user": m.user, "password": password}).to_string())
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn list_status(m: &Member, token: &str) -> u16 {
    m.svc
        .http()
        .get(format!("{}/v1/repo/snapshots", m.svc.url))
        .bearer_auth(token)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn a_replaced_password_stops_working_at_once() {
    let dave = Member::start("dave");
    let token = dave.svc.token(&dave.svc.http(), "dave", &dave.password);
    assert_eq!(list_status(&dave, &token), 200);
    let pw = dave.svc.password_file("dave-new", "a fresh password");
    dave.svc.admin(&[
        "user",
        "passwd",
        "dave",
        "--login-password-file",
        pw.to_str().unwrap(),
    ]);
    assert_eq!(list_status(&dave, &token), 401, "the old session ended");
    assert_eq!(login_status(&dave, &dave.password), 401);
    assert_eq!(login_status(&dave, "a fresh password"), 200);
}

#[test]
fn the_operator_ends_a_users_sessions() {
    let dave = Member::start("dave");
    let http = dave.svc.http();
    let tokens = [
        dave.svc.token(&http, "dave", &dave.password),
        dave.svc.token(&http, "dave", &dave.password),
    ];
    let out = dave.svc.admin_json(&["user", "logout", "dave"]);
    assert_eq!(out["sessions_ended"], 2, "{out}");
    for t in &tokens {
        assert_eq!(list_status(&dave, t), 401);
    }
}

#[test]
fn an_append_only_device_cannot_delete_but_the_maintenance_password_can() {
    let dave = dave();
    dave.svc.admin(&["user", "append-only", "dave", "on"]);
    let pw = dave.svc.password_file("dave-maintenance", MAINTENANCE);
    dave.svc.admin(&[
        "user",
        "passwd",
        "dave",
        "--maintenance",
        "--login-password-file",
        pw.to_str().unwrap(),
    ]);
    // Backups go on as before.
    let src = dave.path("src");
    fs::write(src.join("newer"), b"still more").unwrap();
    dave.backup(&src);
    // Ransomware with the device's credentials: forget, then delete and overwrite directly.
    let out = dave.run(&["forget", "--keep-last", "1", "--prune"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("append-only"), "{}", stderr(&out));
    assert_eq!(dave.json(&["snapshots"]).as_array().unwrap().len(), 3);
    let http = dave.svc.http();
    let token = dave.svc.token(&http, "dave", &dave.password);
    let packs = dave.svc.listed(&http, &token, "data");
    let pack = format!("{}/v1/repo/data/{}", dave.svc.url, packs[0]);
    let delete = http.delete(&pack).bearer_auth(&token).send().unwrap();
    assert_eq!(delete.status().as_u16(), 403);
    let stored = http
        .get(&pack)
        .bearer_auth(&token)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let overwrite = http
        .put(&pack)
        .bearer_auth(&token)
        .body(b"junk".to_vec())
        .send();
    assert_eq!(overwrite.unwrap().status().as_u16(), 403);
    let again = http
        .put(&pack)
        .bearer_auth(&token)
        .body(stored.to_vec())
        .send();
    assert_eq!(
        again.unwrap().status().as_u16(),
        204,
        "a retry of the same bytes"
    );
    dave.ok(&["check", "--read-data"]);
    // The owner, with the password kept off the device.
    let forget = dave
        .cmd(&["forget", "--keep-last", "1", "--prune"])
        .env("KURA_USER_PASSWORD", MAINTENANCE)
        .output()
        .unwrap();
    assert!(forget.status.success(), "{}", stderr(&forget));
    assert_eq!(dave.json(&["snapshots"]).as_array().unwrap().len(), 1);
    dave.restore_and_compare(&src);
}

#[test]
fn a_user_with_data_is_removed_only_with_delete_data() {
    let dave = dave();
    let before = dave.svc.user("dave");
    assert!(before["objects"].as_u64().unwrap() > 0, "{before}");
    let refused = dave.svc.admin_run(&["user", "remove", "dave", "--yes"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--delete-data"),
        "{}",
        stderr(&refused)
    );
    let unconfirmed = dave
        .svc
        .admin_run(&["user", "remove", "dave", "--delete-data"]);
    assert!(!unconfirmed.status.success());
    assert!(
        stderr(&unconfirmed).contains("--yes"),
        "{}",
        stderr(&unconfirmed)
    );
    assert_eq!(
        login_status(&dave, &dave.password),
        200,
        "nothing was removed"
    );
    // Dave is user 1: his copies lie under `users/1` at each demo site.
    let site_files = || {
        files_under(&dave.svc.data.join("sites"))
            .iter()
            .filter(|p| p.to_string_lossy().contains("/users/1/"))
            .count()
    };
    assert!(site_files() > 0);
    let out = dave
        .svc
        .admin_json(&["user", "remove", "dave", "--delete-data", "--yes"]);
    assert_eq!(out["objects_deleted"], before["objects"], "{out}");
    assert_eq!(site_files(), 0, "every copy is gone from the sites");
    assert_eq!(login_status(&dave, &dave.password), 401);
    assert!(dave.svc.user("dave")["removed"].is_string());
    let pw = dave.svc.password_file("dave-again", "dave password");
    let again = dave.svc.admin_run(&[
        "user",
        "add",
        "dave",
        "--login-password-file",
        pw.to_str().unwrap(),
    ]);
    assert!(!again.status.success(), "the name is not given again");
}
