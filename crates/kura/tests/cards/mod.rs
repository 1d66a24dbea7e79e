//! Smart cards that back themselves up (docs/requirements/card.md part B), through a real
//! PC/SC stack: pcscd with vsmartcard's virtual reader, the emulated card in it, and `kura
//! card` speaking PC/SC like any smart-card application.

use std::process::Output;

use crate::fixture::{CardReader, Env, Member, good_sites, parse_json, run_ok, stderr};

/// A card in a reader for `env`: a new emulated card, personalised as `number` with the
/// common key in `env`'s `common.key`.
fn new_card(env: &Env, reader: &CardReader, name: &str, number: u64) -> crate::fixture::Emulator {
    let state = env.path(&format!("{name}.card"));
    let e = reader.insert(env, &state, &[]);
    run_ok(reader.card(
        env,
        &[
            "init",
            "--card-number",
            &number.to_string(),
            "--common-key-file",
            env.path("common.key").to_str().unwrap(),
        ],
    ));
    e
}

fn json(reader: &CardReader, env: &Env, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    parse_json(&run_ok(reader.card(env, &a)))
}

fn bytes(reader: &CardReader, env: &Env, args: &[&str]) -> Vec<u8> {
    let out = reader.card(env, args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    out.stdout
}

/// Every page of the card, application by application.
fn pages(reader: &CardReader, env: &Env) -> Vec<u8> {
    ["purse", "points", "data"]
        .iter()
        .flat_map(|app| bytes(reader, env, &["read", app]))
        .collect()
}

fn write(reader: &CardReader, env: &Env, offset: usize, data: &[u8]) {
    let file = env.path("write.bin");
    std::fs::write(&file, data).unwrap();
    run_ok(reader.card(
        env,
        &[
            "write",
            "data",
            "--offset",
            &offset.to_string(),
            "--file",
            file.to_str().unwrap(),
        ],
    ));
}

/// A refusal by the card: exit code 17 and the status word in the message.
fn refused(out: Output, status: &str) {
    assert_eq!(out.status.code(), Some(17), "{}", stderr(&out));
    assert!(stderr(&out).contains(status), "{status}: {}", stderr(&out));
}

fn restored(reader: &CardReader, env: &Env, app: &str) -> bool {
    json(reader, env, &["status"])["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == app)
        .unwrap()["restored"]
        .as_bool()
        .unwrap()
}

fn noise(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

#[test]
fn a_chain_of_backups_restores_onto_the_same_card_and_onto_a_second_card() {
    let env = Env::new();
    env.init();
    let mut reader = CardReader::start(&env);
    let card = new_card(&env, &reader, "a", 1001);
    run_ok(reader.card(&env, &["value", "purse", "--load", "5000"]));
    run_ok(reader.card(&env, &["value", "points", "--credit", "120"]));
    write(&reader, &env, 0, &noise(20_000, 1));

    let full = json(&reader, &env, &["backup", "--full"]);
    assert_eq!(
        (full["kind"].as_str(), full["records"].as_u64()),
        (Some("full"), Some(1024))
    );
    write(&reader, &env, 30_000, &noise(3000, 2));
    let d1 = json(&reader, &env, &["backup"]);
    assert_eq!(d1["kind"], "differential");
    assert_eq!(
        d1["records"], 48,
        "3000 bytes at 30000 touch 48 pages of 64"
    );
    run_ok(reader.card(&env, &["value", "purse", "--debit", "1200"]));
    write(&reader, &env, 100, b"third");
    let d2 = json(&reader, &env, &["backup", "--differential"]);
    assert_eq!(d2["records"], 2, "the purse's page and one data page");
    eprintln!(
        "64 KiB card through PC/SC: full backup {:.3} s on the card ({:.3} s stored), \
         differential of 48 pages {:.3} s ({:.3} s)",
        full["card_seconds"].as_f64().unwrap(),
        full["seconds"].as_f64().unwrap(),
        d1["card_seconds"].as_f64().unwrap(),
        d1["seconds"].as_f64().unwrap()
    );
    let listed = json(&reader, &env, &["backups"]);
    let rows: Vec<(u64, u64, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["card"].as_u64().unwrap(),
                b["sequence"].as_u64().unwrap(),
                b["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (1001, 1, "full"),
            (1001, 2, "differential"),
            (1001, 3, "differential")
        ]
    );
    let want = pages(&reader, &env);

    // The same card, scribbled over, comes back page for page.
    write(&reader, &env, 0, &noise(40_000, 9));
    run_ok(reader.card(&env, &["restore"]));
    assert_eq!(pages(&reader, &env), want, "every page as at backup 3");
    assert!(restored(&reader, &env, "purse") && restored(&reader, &env, "data"));
    let purse = json(&reader, &env, &["value", "purse"]);
    assert_eq!(
        purse["value"], 0,
        "restored money is reset, never spent twice"
    );
    assert!(
        !restored(&reader, &env, "purse"),
        "the reset clears the flag"
    );
    refused(
        reader.card(&env, &["value", "points"]).output().unwrap(),
        "6300",
    );
    run_ok(reader.card(&env, &["value", "points", "--set", "120"]));
    assert_eq!(json(&reader, &env, &["value", "points"])["value"], 120);
    let history = json(&reader, &env, &["history"]);
    let loads = history.as_array().unwrap();
    assert_eq!(
        loads.len(),
        1,
        "the load, kept apart from what a restore writes"
    );
    assert_eq!(
        (&loads[0]["app"], &loads[0]["amount"], &loads[0]["count"]),
        (&"purse".into(), &5000.into(), &1.into())
    );
    drop(card);
    reader.restart(&env);

    // A second card of the account takes the first card's chain; its own number stays.
    let _b = new_card(&env, &reader, "b", 2002);
    run_ok(reader.card(
        &env,
        &["restore", "--from-card", "1001", "--to-card", "2002"],
    ));
    assert_eq!(pages(&reader, &env), want);
    assert_eq!(json(&reader, &env, &["status"])["card"], 2002);
    assert_eq!(json(&reader, &env, &["value", "purse"])["value"], 0);
}

#[test]
fn a_wrong_target_number_or_common_key_is_refused_and_nothing_is_written() {
    let env = Env::new();
    env.init();
    let mut reader = CardReader::start(&env);
    let a = new_card(&env, &reader, "a", 1);
    write(&reader, &env, 0, &noise(5000, 3));
    run_ok(reader.card(&env, &["backup"]));
    drop(a);
    reader.restart(&env);

    let b = new_card(&env, &reader, "b", 2);
    write(&reader, &env, 0, b"card two's own");
    let before = pages(&reader, &env);
    let out = reader
        .card(&env, &["restore", "--from-card", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--to-card 2"), "{}", stderr(&out));
    refused(
        reader
            .card(&env, &["restore", "--from-card", "1", "--to-card", "3"])
            .output()
            .unwrap(),
        "6A88",
    );
    assert_eq!(pages(&reader, &env), before);
    drop(b);
    reader.restart(&env);

    // A card of another account: another common key.
    let state = env.path("c.card");
    let _c = reader.insert(&env, &state, &[]);
    run_ok(reader.card(
        &env,
        &[
            "init",
            "--card-number",
            "3",
            "--common-key-file",
            env.path("other.key").to_str().unwrap(),
        ],
    ));
    let before = pages(&reader, &env);
    refused(
        reader
            .card(&env, &["restore", "--from-card", "1", "--to-card", "3"])
            .output()
            .unwrap(),
        "6988",
    );
    assert_eq!(pages(&reader, &env), before);
    assert!(
        !json(&reader, &env, &["status"])["restoring"]
            .as_bool()
            .unwrap()
    );
}

fn image(env: &Env, number: u64) -> Vec<u8> {
    std::fs::read(
        env.state
            .join("card")
            .join(number.to_string())
            .join("backup.kcb"),
    )
    .unwrap()
}

#[test]
fn a_tampered_truncated_or_reordered_backup_is_refused_before_anything_is_written() {
    let env = Env::new();
    env.init();
    let reader = CardReader::start(&env);
    let _a = new_card(&env, &reader, "a", 7);
    write(&reader, &env, 0, &noise(9000, 4));
    run_ok(reader.card(&env, &["backup"]));
    let good = image(&env, 7);
    write(&reader, &env, 0, b"after the backup");
    let before = pages(&reader, &env);
    // KURACB1\n, the 167-byte opening, then records of 2 + 64 + 40 bytes.
    let (start, len) = (8 + 167, 106);
    let mut tampered = good.clone();
    tampered[start + 500 * len + 30] ^= 0x01;
    let mut reordered = good.clone();
    let second = reordered[start + len..start + 2 * len].to_vec();
    reordered.copy_within(start..start + len, start + len);
    reordered[start..start + len].copy_from_slice(&second);
    let truncated = good[..good.len() - len].to_vec();
    for (name, bytes, status) in [
        ("tampered", &tampered, Some("6988")),
        ("reordered", &reordered, Some("6988")),
        ("truncated", &truncated, None),
    ] {
        let file = env.path(&format!("{name}.kcb"));
        std::fs::write(&file, bytes).unwrap();
        let out = reader
            .card(&env, &["restore", "--image", file.to_str().unwrap()])
            .output()
            .unwrap();
        match status {
            Some(s) => refused(out, s),
            None => {
                assert_eq!(out.status.code(), Some(1), "{name}");
                assert!(stderr(&out).contains("record bytes"), "{}", stderr(&out));
            }
        }
        assert_eq!(pages(&reader, &env), before, "{name}: nothing written");
        assert!(
            !json(&reader, &env, &["status"])["restoring"]
                .as_bool()
                .unwrap()
        );
    }
    let file = env.path("good.kcb");
    std::fs::write(&file, &good).unwrap();
    run_ok(reader.card(&env, &["restore", "--image", file.to_str().unwrap()]));
    assert_ne!(pages(&reader, &env), before, "the good image is written");
}

#[test]
fn a_backup_cut_off_keeps_its_flags_and_the_next_differential_has_its_pages() {
    let env = Env::new();
    env.init();
    let mut reader = CardReader::start(&env);
    let state = env.path("a.card");
    let card = new_card(&env, &reader, "a", 11);
    run_ok(reader.card(&env, &["backup"]));
    write(&reader, &env, 1000, &noise(2000, 5));
    drop(card);
    reader.restart(&env);
    // Pulled out at the tenth BACKUP TRANSFER: the host never sends BACKUP COMPLETE.
    let mut card = reader.insert(&env, &state, &["--pull-out", "32:10"]);
    let out = reader.card(&env, &["backup", "--full"]).output().unwrap();
    assert!(!out.status.success());
    assert_eq!(card.wait_pulled_out(), Some(19));
    assert_eq!(
        card.log().matches("ins=32").count(),
        9,
        "nine transfers answered"
    );
    drop(card);
    reader.restart(&env);
    let _card = reader.insert(&env, &state, &[]);
    let s = json(&reader, &env, &["status"]);
    assert_eq!(
        s["backing_up"], true,
        "the in-progress flag outlives the card's power"
    );
    assert_eq!(s["changed_pages"], 32, "the table is kept");
    refused(
        reader
            .card(
                &env,
                &[
                    "write",
                    "data",
                    "--file",
                    env.path("write.bin").to_str().unwrap(),
                ],
            )
            .output()
            .unwrap(),
        "6985",
    );
    let next = json(&reader, &env, &["backup", "--differential"]);
    assert_eq!(
        next["records"], 32,
        "the cut-off backup's pages are in the next one"
    );
    assert_eq!(next["sequence"], 3, "the cut-off backup used sequence 2");
    write(&reader, &env, 0, b"writes are allowed again");
    assert_eq!(json(&reader, &env, &["status"])["changed_pages"], 1);
}

#[test]
fn a_card_pulled_out_during_a_restore_keeps_value_locked_until_a_complete_restore() {
    let env = Env::new();
    env.init();
    let mut reader = CardReader::start(&env);
    let state = env.path("a.card");
    let card = new_card(&env, &reader, "a", 21);
    run_ok(reader.card(&env, &["value", "purse", "--load", "900"]));
    write(&reader, &env, 0, &noise(50_000, 6));
    run_ok(reader.card(&env, &["backup"]));
    let want = pages(&reader, &env);
    write(&reader, &env, 0, &noise(50_000, 7));
    drop(card);
    reader.restart(&env);
    // 1024 records go two to a RESTORE TRANSFER: 512 in the check pass, then the write pass.
    let mut card = reader.insert(&env, &state, &["--pull-out", "42:700"]);
    let out = reader.card(&env, &["restore"]).output().unwrap();
    assert!(!out.status.success());
    assert_eq!(card.wait_pulled_out(), Some(19));
    drop(card);
    reader.restart(&env);
    let _card = reader.insert(&env, &state, &[]);
    assert_eq!(json(&reader, &env, &["status"])["restoring"], true);
    refused(
        reader.card(&env, &["value", "purse"]).output().unwrap(),
        "6985",
    );
    refused(
        reader
            .card(&env, &["value", "purse", "--credit", "1"])
            .output()
            .unwrap(),
        "6985",
    );
    run_ok(reader.card(&env, &["restore"]));
    assert_eq!(pages(&reader, &env), want);
    assert_eq!(json(&reader, &env, &["value", "purse"])["value"], 0);
}

#[test]
fn a_pin_blocks_after_three_wrong_tries_and_then_refuses_the_right_one() {
    let env = Env::new();
    env.init();
    let reader = CardReader::start(&env);
    let _card = new_card(&env, &reader, "a", 31);
    for status in ["63C2", "63C1", "6983"] {
        let out = reader
            .card(&env, &["backup"])
            .env("KURA_CARD_PIN", "0000")
            .output()
            .unwrap();
        refused(out, status);
    }
    refused(reader.card(&env, &["backup"]).output().unwrap(), "6983");
    assert_eq!(json(&reader, &env, &["status"])["pin_tries"], 0);
    assert!(
        json(&reader, &env, &["backups"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_card_backed_up_to_the_service_is_restored_from_it() {
    let member = Member::start("alice");
    member.init();
    let env = &member.env;
    let reader = CardReader::start(env);
    let _card = new_card(env, &reader, "a", 4242);
    write(&reader, env, 0, &noise(30_000, 8));
    let at_service = |args: &[&str]| {
        let mut a = vec!["--json", "card"];
        a.extend_from_slice(args);
        parse_json(&run_ok(reader.wire(member.cmd(&a))))
    };
    assert_eq!(at_service(&["backup"])["kind"], "full");
    write(&reader, env, 64, b"changed");
    assert_eq!(at_service(&["backup"])["records"], 1);
    let want = pages(&reader, env);
    let listed = at_service(&["backups"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    // The service keeps the card's snapshots as it does any other: every object in two good
    // copies on two sites.
    let objects = good_sites(&member.json(&["conditions"]));
    assert!(!objects.is_empty());
    for mut sites in objects {
        sites.dedup();
        assert_eq!(sites.len(), 2, "{sites:?}");
    }
    write(&reader, env, 0, &noise(30_000, 9));
    at_service(&["restore"]);
    assert_eq!(pages(&reader, env), want);
}
