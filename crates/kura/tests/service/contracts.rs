//! Contracts: every limit and condition of a member's contract is enforced, with the reason.

use std::fs;
use std::path::PathBuf;

use crate::fixture::*;

/// Carol with an initialized repository and a small tree to back up.
fn carol() -> (Member, PathBuf) {
    let carol = Member::start("carol");
    let src = carol.path("src");
    make_tree(&src, 5, 50);
    carol.init();
    (carol, src)
}

/// Asserts that `kura ARGS` as `member` fails, saying `reason`.
fn refused(member: &Member, args: &[&str], reason: &str) {
    let out = member.run(args);
    assert!(!out.status.success(), "{args:?} was allowed");
    assert!(stderr(&out).contains(reason), "{}", stderr(&out));
}

#[test]
fn the_archive_limit_is_enforced() {
    let (carol, src) = carol();
    carol.svc.contract("carol", &["--max-archives", "1"]);
    carol.backup(&src);
    refused(
        &carol,
        &["backup", src.to_str().unwrap()],
        "limit of 1 archives",
    );
}

#[test]
fn an_unpaid_contract_is_refused() {
    let (carol, _) = carol();
    carol.svc.admin(&[
        "contract",
        "set",
        "carol",
        "--until",
        "2099-12-31",
        "--paid",
        "no",
    ]);
    refused(&carol, &["snapshots"], "not paid");
}

#[test]
fn a_lapsed_contract_is_refused() {
    let (carol, _) = carol();
    carol.svc.admin(&[
        "contract",
        "set",
        "carol",
        "--until",
        "2020-01-01",
        "--paid",
        "yes",
    ]);
    refused(&carol, &["snapshots"], "lapsed");
}

#[test]
fn the_storage_limit_is_enforced() {
    let (carol, src) = carol();
    carol.backup(&src);
    carol.svc.contract("carol", &["--max-bytes", "1000"]);
    fs::write(src.join("more"), noise(50_000, 9)).unwrap();
    refused(
        &carol,
        &["backup", src.to_str().unwrap()],
        "storage limit of 1000 bytes",
    );
}

#[test]
fn the_access_limit_is_enforced() {
    let (carol, src) = carol();
    carol.backup(&src);
    carol.ok(&["snapshots"]);
    carol.ok(&["snapshots"]);
    // The operator sees the accesses and the bytes stored.
    let row = carol.svc.user("carol");
    assert!(row["accesses"].as_u64().unwrap() >= 4, "{row}");
    assert!(row["bytes"].as_u64().unwrap() > 0, "{row}");
    carol.svc.contract("carol", &["--max-accesses", "1"]);
    let before = carol.svc.user("carol")["accesses"].clone();
    refused(&carol, &["snapshots"], "accesses is reached");
    refused(&carol, &["snapshots"], "accesses is reached");
    assert_eq!(
        carol.svc.user("carol")["accesses"],
        before,
        "a refused login is not counted"
    );
}
