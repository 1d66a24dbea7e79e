//! The billing cycle through the real binary (`docs/requirements/placement.md` requirement 11): a
//! settlement checks and charges each member once, however often it runs; statements reach the
//! members; an objection holds a charge until the operator resolves it; unobjected charges settle
//! after their deadline; the ledger always balances; and a settlement killed at any point leaves
//! all of it or none.

use std::fs;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::fixture::*;

const PRICES: &str = r#"
[billing]
currency = "JPY"
objection_days = 14

[[billing.levels]]
level = "standard"
monthly = 500
per_gb_month = 1000

[billing.incidents]
media_fault = -50
tampering = -300
lost = -1000
"#;

/// The first day of next month (UTC): settling on it charges the month the test runs in.
fn next_month() -> jiff::civil::Date {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    today
        .first_of_month()
        .checked_add(jiff::Span::new().months(1))
        .unwrap()
}

/// `kura admin --json billing ARGS`.
fn billing(svc: &Service, args: &[&str]) -> Value {
    let mut all = vec!["billing"];
    all.extend_from_slice(args);
    svc.admin_json(&all)
}

/// A settlement on `date`.
fn settle(svc: &Service, date: jiff::civil::Date) -> Value {
    billing(svc, &["run", "--date", &date.to_string()])
}

/// Asserts that the ledger balances; returns it.
fn ledger_is_balanced(svc: &Service) -> Value {
    let l = billing(svc, &["ledger"]);
    assert_eq!(l["balanced"], true, "{l}");
    l
}

fn statements(member: &Client) -> Vec<Value> {
    member
        .json(&["billing", "statements"])
        .as_array()
        .unwrap()
        .clone()
}

/// `member`'s first backup: `src`, a tree of 10 files and a file of `big` bytes of noise.
fn backed_up(member: &Client, src: &std::path::Path, seed: u64, big: usize) {
    make_tree(src, 10, seed);
    fs::write(src.join("big"), noise(big, 9)).unwrap();
    member.init();
    member.backup(src);
}

/// Alice and bob, each with a backup, at a service with prices, and a first settlement for
/// the month; before it, a media fault in alice's data (found and repaired by the check the
/// settlement runs first) and a copy of hers tampered with (which that check keeps as
/// evidence, so the object is stored again elsewhere before anyone is charged).
struct Billed {
    alice: Member,
    bob: Client,
    tampered: String,
    run: Value,
}

fn billed() -> Billed {
    let env = Env::new();
    let svc = Service::options(&env).config(PRICES).start();
    let alice = Member::on(env, svc, "alice");
    let bob = alice.another("bob", "bob's password");
    backed_up(&alice, &alice.path("src-alice"), 0, 3_000_000);
    backed_up(&bob, &alice.path("src-bob"), 1, 6_000_000);
    let conditions = alice.conditions();
    let object = conditions[0]["object"].as_str().unwrap();
    let tampered = conditions
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["object"].as_str().unwrap())
        .find(|o| o.starts_with("data/") && *o != object)
        .unwrap()
        .to_string();
    alice.svc.forge("demo-east", &tampered, 0..4);
    let file = alice.svc.demo_file("demo-west", object);
    let mut bytes = fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(&file, bytes).unwrap();
    let run = settle(&alice.svc, next_month());
    Billed {
        alice,
        bob,
        tampered,
        run,
    }
}

#[test]
fn a_settlement_repairs_the_members_data_before_it_charges() {
    let b = billed();
    assert_eq!(b.run["checked"], 2, "{}", b.run);
    assert_eq!(b.run["restored"], 1, "{}", b.run);
    let now = b.alice.conditions();
    let copies = now
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["object"] == b.tampered.as_str())
        .unwrap()["copies"]
        .clone();
    let good: Vec<&str> = copies
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "ok")
        .map(|c| c["site"].as_str().unwrap())
        .collect();
    assert_eq!(good.len(), 2, "{copies}");
    assert!(!good.contains(&"demo-east"), "{copies}");
}

#[test]
fn a_settlement_issues_one_statement_per_member() {
    let b = billed();
    assert_eq!(b.run["issued"].as_array().unwrap().len(), 2, "{}", b.run);
    assert_eq!(b.run["notified"], 2, "{}", b.run);
    let ledger = ledger_is_balanced(&b.alice.svc);
    assert_eq!(ledger["entries"].as_array().unwrap().len(), 4, "{ledger}");
}

#[test]
fn a_second_settlement_charges_nobody_twice() {
    let b = billed();
    let postings = ledger_is_balanced(&b.alice.svc)["entries"]
        .as_array()
        .unwrap()
        .len();
    let again = settle(&b.alice.svc, next_month());
    assert!(again["issued"].as_array().unwrap().is_empty(), "{again}");
    assert_eq!(again["already"].as_array().unwrap().len(), 2, "{again}");
    assert_eq!(again["checked"], 0, "{again}");
    let ledger = ledger_is_balanced(&b.alice.svc);
    assert_eq!(ledger["entries"].as_array().unwrap().len(), postings);
}

#[test]
fn a_statement_lists_the_fee_the_storage_the_incidents() {
    let b = billed();
    let alice = statements(&b.alice);
    assert_eq!(alice.len(), 1);
    let a = &alice[0];
    assert_eq!(a["status"], "open");
    let amounts: Vec<i64> = a["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts[0], 500, "{a}");
    assert!(amounts[1] > 0, "storage is charged: {a}");
    assert_eq!(amounts[2], -50, "the media fault's discount: {a}");
    assert_eq!(amounts[3], -300, "the tampering's discount: {a}");
    assert_eq!(a["total"].as_i64().unwrap(), amounts.iter().sum::<i64>());
    let bob = statements(&b.bob);
    assert_eq!(bob[0]["lines"].as_array().unwrap().len(), 2, "{bob:?}");
}

#[test]
fn the_member_is_told_of_the_statement() {
    let b = billed();
    let a = &statements(&b.alice)[0];
    let told = b.alice.messages_of("statement");
    assert_eq!(told.len(), 1);
    let body = told[0]["body"].as_str().unwrap();
    for want in [
        "Membership, level standard",
        "media_fault",
        "Storage conditions now",
        "kura billing object",
        a["deadline"].as_str().unwrap(),
    ] {
        assert!(body.contains(want), "{want:?} not in {body}");
    }
}

/// [`billed`], and bob's objection to his statement; each member's statement as issued.
struct Objected {
    b: Billed,
    alice_statement: Value,
    bob_statement: Value,
}

fn objected() -> Objected {
    let b = billed();
    let alice_statement = statements(&b.alice)[0].clone();
    let bob_statement = statements(&b.bob)[0].clone();
    let held = b.bob.json(&[
        "billing",
        "object",
        bob_statement["id"].as_str().unwrap(),
        "--reason",
        "a site lost my data",
    ]);
    assert_eq!(held["status"], "held");
    Objected {
        b,
        alice_statement,
        bob_statement,
    }
}

impl Objected {
    fn alice_id(&self) -> &str {
        self.alice_statement["id"].as_str().unwrap()
    }

    fn bob_id(&self) -> &str {
        self.bob_statement["id"].as_str().unwrap()
    }
}

#[test]
fn an_objection_holds_the_charge() {
    let o = objected();
    assert_eq!(o.b.bob.messages_of("objection").len(), 1);
}

#[test]
fn a_statement_is_objected_to_once() {
    let o = objected();
    let twice =
        o.b.bob
            .run(&["billing", "object", o.bob_id(), "--reason", "again"]);
    assert!(!twice.status.success());
    assert!(stderr(&twice).contains("held"), "{twice:?}");
}

#[test]
fn nobody_objects_to_another_members_statement() {
    let o = objected();
    let other =
        o.b.bob
            .run(&["billing", "object", o.alice_id(), "--reason", "x"]);
    assert!(!other.status.success());
}

/// [`objected`], then settlements on alice's deadline and the day after; the second's report.
fn past_the_deadline() -> (Objected, Value) {
    let o = objected();
    let deadline: jiff::civil::Date = o.alice_statement["deadline"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let on_deadline = settle(&o.b.alice.svc, deadline);
    assert!(
        on_deadline["settled"].as_array().unwrap().is_empty(),
        "{on_deadline}"
    );
    let settled = settle(&o.b.alice.svc, deadline.tomorrow().unwrap());
    (o, settled)
}

#[test]
fn unobjected_charges_settle_after_their_deadline() {
    let (o, settled) = past_the_deadline();
    assert_eq!(
        settled["settled"],
        serde_json::json!([o.alice_id()]),
        "{settled}"
    );
    assert_eq!(statements(&o.b.alice)[0]["status"], "settled");
    assert_eq!(o.b.alice.messages_of("settled").len(), 1);
}

/// [`past_the_deadline`], then the operator lowers bob's charge to 100 with a note; the
/// operator's report.
fn resolved() -> (Objected, Value) {
    let (o, _) = past_the_deadline();
    let r = billing(
        &o.b.alice.svc,
        &[
            "resolve",
            o.bob_id(),
            "--keep",
            "100",
            "--note",
            "storage refunded",
        ],
    );
    (o, r)
}

#[test]
fn the_member_is_told_how_the_operator_resolved_the_objection() {
    let (o, r) = resolved();
    assert_eq!(r["status"], "reduced", "{r}");
    let told = o.b.bob.messages_of("settled");
    assert!(
        told[0]["body"]
            .as_str()
            .unwrap()
            .contains("storage refunded"),
        "{told:?}"
    );
}

#[test]
fn the_ledger_shows_each_charge_as_finally_settled() {
    let (o, _) = resolved();
    let ledger = ledger_is_balanced(&o.b.alice.svc);
    let balances = &ledger["balances"];
    assert_eq!(balances["receivable:2"].as_i64(), Some(100), "{balances}");
    assert_eq!(
        balances["revenue"].as_i64(),
        Some(-(o.alice_statement["total"].as_i64().unwrap() + 100)),
        "{balances}"
    );
    assert_eq!(
        (balances["held"].as_i64(), balances["unsettled"].as_i64()),
        (Some(0), Some(0)),
        "{balances}"
    );
    assert!(o.bob_statement["total"].as_i64().unwrap() > 100);
}

#[test]
fn a_resolved_objection_is_not_resolved_again() {
    let (o, _) = resolved();
    let out =
        o.b.alice
            .svc
            .admin_run(&["billing", "resolve", o.bob_id(), "--uphold"]);
    assert!(!out.status.success());
}

#[test]
fn no_statement_of_a_period_is_issued_twice() {
    let (o, _) = resolved();
    assert_eq!(
        billing(&o.b.alice.svc, &["statements"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_settlement_killed_at_any_point_leaves_all_of_it_or_none() {
    let env = Env::new();
    let svc = Service::options(&env).config(PRICES).start();
    let members: Vec<Client> = (0..5u64)
        .map(|i| {
            let (name, pw) = (format!("m{i}"), format!("password {i}"));
            svc.add_user(&name, &pw);
            let member = Client::new(&env, &svc, &name, &pw);
            let src = env.path(&format!("src-{i}"));
            make_tree(&src, 20, i);
            fs::write(src.join("big"), noise(8_000_000, 100 + i)).unwrap();
            member.init();
            member.backup(&src);
            member
        })
        .collect();
    let date = next_month().to_string();
    for delay_ms in [5, 20, 50, 100, 200, 400, 800, 1600] {
        let mut run = svc
            .admin_cmd(&["billing", "run", "--date", &date])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = run.kill(); // SIGKILL, wherever it is
        let finished = run.wait().unwrap().success();
        ledger_is_balanced(&svc);
        let issued = billing(&svc, &["statements"]).as_array().unwrap().len();
        assert!(
            issued == 0 || issued == members.len(),
            "{issued} statements after a kill"
        );
        if finished {
            break;
        }
    }
    let last = billing(&svc, &["run", "--date", &date]);
    let statements = billing(&svc, &["statements"]);
    assert_eq!(
        statements.as_array().unwrap().len(),
        members.len(),
        "{last}"
    );
    let ledger = ledger_is_balanced(&svc);
    assert_eq!(
        ledger["entries"].as_array().unwrap().len(),
        2 * members.len(),
        "one charge each: {ledger}"
    );
    // Every member heard of their statement, whatever the kills interrupted.
    for m in &members {
        assert!(
            !m.messages_of("statement").is_empty(),
            "{} was not told",
            m.user
        );
    }
}

#[test]
fn the_service_settles_last_month_on_its_own() {
    let env = Env::new();
    let svc = Service::options(&env)
        .config(&format!("billing_every_secs = 1\n{PRICES}"))
        .start();
    let alice = Member::on(env, svc, "alice");
    alice
        .svc
        .contract("alice", &["--member-since", "2020-01-01"]);
    let src = alice.path("src");
    make_tree(&src, 5, 1);
    alice.init();
    alice.backup(&src);
    let last_month = {
        let today = jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date();
        today
            .first_of_month()
            .yesterday()
            .unwrap()
            .strftime("%Y-%m")
            .to_string()
    };
    let issued = wait_until(Duration::from_secs(60), "a statement to be issued", || {
        let list = statements(&alice);
        (!list.is_empty()).then_some(list)
    });
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0]["id"], format!("1-{last_month}"));
    // Later runs of the job charge nobody again.
    alice.svc.await_task_runs("billing", 2);
    assert_eq!(statements(&alice).len(), 1);
    ledger_is_balanced(&alice.svc);
}
