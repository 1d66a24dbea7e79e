//! The billing cycle through the real binary (`spec/placement.md` requirement 11): a
//! settlement checks and charges each member once, however often it runs; statements reach
//! the members; an objection holds a charge until the operator resolves it; unobjected
//! charges settle after their deadline; the ledger always balances; and a settlement killed
//! at any point leaves all of it or none.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::service::*;
use crate::common::*;
use serde_json::Value;

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

fn start(env: &Env) -> (Service, std::path::PathBuf) {
    let data = env.path("service");
    let config = env.path("service.toml");
    fs::write(&config, PRICES).unwrap();
    let svc = Service::start_with(
        &data,
        "127.0.0.1:0",
        "warn",
        Stdio::null(),
        &["--server-config", config.to_str().unwrap()],
    );
    (svc, config)
}

fn billing(svc: &Service, config: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--server-config", config.to_str().unwrap(), "billing"];
    all.extend_from_slice(args);
    svc.admin_json(&all)
}

fn ledger_is_balanced(svc: &Service, config: &Path) -> Value {
    let l = billing(svc, config, &["ledger"]);
    assert_eq!(l["balanced"], true, "{l}");
    l
}

fn statements(env: &Env, svc: &Service, user: &str, pw: &str) -> Vec<Value> {
    client_json(env, svc, user, pw, &["billing", "statements"])
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn statements_are_issued_once_objected_to_resolved_and_settled() {
    let env = Env::new();
    let (svc, config) = start(&env);
    let members = [("alice", "alice password"), ("bob", "bob's password")];
    for (i, (name, pw)) in members.iter().enumerate() {
        svc.add_user(name, pw, env.dir.path());
        let src = env.path(&format!("src-{name}"));
        make_tree(&src, 10, i as u64);
        fs::write(src.join("big"), noise(3_000_000 * (i + 1), 9)).unwrap();
        run_ok(client(&env, &svc, name, pw, &["init"]));
        run_ok(client(
            &env,
            &svc,
            name,
            pw,
            &["backup", src.to_str().unwrap()],
        ));
    }
    // A media fault in alice's data, found and repaired by the check the settlement runs
    // first; and a copy tampered with, which that check keeps as evidence, so the object is
    // stored again elsewhere before anyone is charged.
    let conditions = client_json(&env, &svc, "alice", "alice password", &["conditions"]);
    let object = conditions[0]["object"].as_str().unwrap();
    let file = demo_file(&svc.data, "demo-west", object);
    let tampered = conditions
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["object"].as_str().unwrap())
        .find(|o| o.starts_with("data/") && *o != object)
        .unwrap();
    forge(&svc.data, "demo-east", tampered, 0..4);
    let mut bytes = fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(&file, bytes).unwrap();

    let date = next_month();
    let run = billing(&svc, &config, &["run", "--date", &date.to_string()]);
    assert_eq!(run["checked"], 2, "{run}");
    assert_eq!(run["restored"], 1, "{run}");
    let now = client_json(&env, &svc, "alice", "alice password", &["conditions"]);
    let copies = now
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["object"] == tampered)
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
    assert_eq!(run["issued"].as_array().unwrap().len(), 2, "{run}");
    assert_eq!(run["notified"], 2, "{run}");
    let ledger = ledger_is_balanced(&svc, &config);
    let postings = ledger["entries"].as_array().unwrap().len();
    assert_eq!(postings, 4, "{ledger}");
    // Again: nobody is charged twice.
    let again = billing(&svc, &config, &["run", "--date", &date.to_string()]);
    assert!(again["issued"].as_array().unwrap().is_empty(), "{again}");
    assert_eq!(again["already"].as_array().unwrap().len(), 2, "{again}");
    assert_eq!(again["checked"], 0, "{again}");
    let ledger = ledger_is_balanced(&svc, &config);
    assert_eq!(ledger["entries"].as_array().unwrap().len(), postings);

    // Each member sees their statement: the fee, the storage, and alice's media fault.
    let alice = statements(&env, &svc, "alice", "alice password");
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
    let bob = statements(&env, &svc, "bob", "bob's password");
    assert_eq!(bob[0]["lines"].as_array().unwrap().len(), 2, "{bob:?}");
    let told = messages_of(&env, &svc, "alice", "alice password", "statement");
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

    // Bob objects: his charge is held; alice's settles after the deadline.
    let bob_id = bob[0]["id"].as_str().unwrap().to_string();
    let held = run_ok(client(
        &env,
        &svc,
        "bob",
        "bob's password",
        &[
            "--json",
            "billing",
            "object",
            &bob_id,
            "--reason",
            "a site lost my data",
        ],
    ));
    let held: Value = serde_json::from_str(&held).unwrap();
    assert_eq!(held["status"], "held");
    assert_eq!(
        messages_of(&env, &svc, "bob", "bob's password", "objection").len(),
        1
    );
    // Objecting twice, or to someone else's statement, is refused.
    let twice = client(
        &env,
        &svc,
        "bob",
        "bob's password",
        &["billing", "object", &bob_id, "--reason", "again"],
    )
    .output()
    .unwrap();
    assert!(!twice.status.success());
    assert!(
        String::from_utf8_lossy(&twice.stderr).contains("held"),
        "{twice:?}"
    );
    let alice_id = a["id"].as_str().unwrap().to_string();
    let other = client(
        &env,
        &svc,
        "bob",
        "bob's password",
        &["billing", "object", &alice_id, "--reason", "x"],
    )
    .output()
    .unwrap();
    assert!(!other.status.success());

    let deadline: jiff::civil::Date = a["deadline"].as_str().unwrap().parse().unwrap();
    let on_deadline = billing(&svc, &config, &["run", "--date", &deadline.to_string()]);
    assert!(
        on_deadline["settled"].as_array().unwrap().is_empty(),
        "{on_deadline}"
    );
    let after = deadline.tomorrow().unwrap();
    let settled = billing(&svc, &config, &["run", "--date", &after.to_string()]);
    assert_eq!(
        settled["settled"],
        serde_json::json!([alice_id]),
        "{settled}"
    );
    assert_eq!(
        statements(&env, &svc, "alice", "alice password")[0]["status"],
        "settled"
    );
    assert_eq!(
        messages_of(&env, &svc, "alice", "alice password", "settled").len(),
        1
    );

    // The operator lowers bob's charge to 100; bob is told, with the note.
    let total = bob[0]["total"].as_i64().unwrap();
    let r = billing(
        &svc,
        &config,
        &[
            "resolve",
            &bob_id,
            "--keep",
            "100",
            "--note",
            "storage refunded",
        ],
    );
    assert_eq!(r["status"], "reduced", "{r}");
    let told = messages_of(&env, &svc, "bob", "bob's password", "settled");
    assert!(
        told[0]["body"]
            .as_str()
            .unwrap()
            .contains("storage refunded"),
        "{told:?}"
    );
    let ledger = ledger_is_balanced(&svc, &config);
    let b = &ledger["balances"];
    assert_eq!(b["receivable:2"].as_i64(), Some(100), "{b}");
    assert_eq!(
        b["revenue"].as_i64(),
        Some(-(a["total"].as_i64().unwrap() + 100)),
        "{b}"
    );
    assert_eq!(
        (b["held"].as_i64(), b["unsettled"].as_i64()),
        (Some(0), Some(0)),
        "{b}"
    );
    assert!(total > 100);
    // Nothing more to resolve, and no statement of a period twice.
    let out = kura()
        .args(["admin", "--data-dir"])
        .arg(&svc.data)
        .args(["billing", "resolve", &bob_id, "--uphold"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        billing(&svc, &config, &["statements"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_settlement_killed_at_any_point_leaves_all_of_it_or_none() {
    let env = Env::new();
    let (svc, config) = start(&env);
    let members = 5;
    for i in 0..members {
        let (name, pw) = (format!("m{i}"), format!("password {i}"));
        svc.add_user(&name, &pw, env.dir.path());
        let src = env.path(&format!("src-{i}"));
        make_tree(&src, 20, i);
        fs::write(src.join("big"), noise(8_000_000, 100 + i)).unwrap();
        run_ok(client(&env, &svc, &name, &pw, &["init"]));
        run_ok(client(
            &env,
            &svc,
            &name,
            &pw,
            &["backup", src.to_str().unwrap()],
        ));
    }
    let date = next_month().to_string();
    for delay_ms in [5, 20, 50, 100, 200, 400, 800, 1600] {
        let mut run = kura()
            .args(["admin", "--data-dir"])
            .arg(&svc.data)
            .args(["--server-config", config.to_str().unwrap()])
            .args(["billing", "run", "--date", &date])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = run.kill(); // SIGKILL, wherever it is
        let finished = run.wait().unwrap().success();
        ledger_is_balanced(&svc, &config);
        let issued = billing(&svc, &config, &["statements"])
            .as_array()
            .unwrap()
            .len();
        assert!(
            issued == 0 || issued == members as usize,
            "{issued} statements after a kill"
        );
        if finished {
            break;
        }
    }
    let last = billing(&svc, &config, &["run", "--date", &date]);
    let statements = billing(&svc, &config, &["statements"]);
    assert_eq!(
        statements.as_array().unwrap().len(),
        members as usize,
        "{last}"
    );
    let ledger = ledger_is_balanced(&svc, &config);
    assert_eq!(
        ledger["entries"].as_array().unwrap().len(),
        2 * members as usize,
        "one charge each: {ledger}"
    );
    // Every member heard of their statement, whatever the kills interrupted.
    for i in 0..members {
        let told = messages_of(
            &env,
            &svc,
            &format!("m{i}"),
            &format!("password {i}"),
            "statement",
        );
        assert!(!told.is_empty(), "m{i} was not told");
    }
}

#[test]
fn the_service_settles_last_month_on_its_own() {
    let env = Env::new();
    let data = env.path("service");
    let config = env.path("service.toml");
    fs::write(&config, format!("billing_every_secs = 1\n{PRICES}")).unwrap();
    let svc = Service::start_with(
        &data,
        "127.0.0.1:0",
        "warn",
        Stdio::null(),
        &["--server-config", config.to_str().unwrap()],
    );
    svc.add_user("alice", "alice password", env.dir.path());
    svc.contract("alice", &["--member-since", "2020-01-01"]);
    let src = env.path("src");
    make_tree(&src, 5, 1);
    run_ok(client(&env, &svc, "alice", "alice password", &["init"]));
    backup(&env, &svc, "alice", "alice password", &src);
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
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let issued = loop {
        let list = statements(&env, &svc, "alice", "alice password");
        if !list.is_empty() {
            break list;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no statement was issued"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0]["id"], format!("1-{last_month}"));
    // Later runs of the job charge nobody again.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(statements(&env, &svc, "alice", "alice password").len(), 1);
    ledger_is_balanced(&svc, &config);
}
