//! What the operator manages with the service stopped: sites, risk feeds, site keys, levels.

use std::fs;

use crate::fixture::*;

/// The operator of a service that has never run, without configuration.
fn unconfigured() -> (Env, Operator) {
    let env = Env::new();
    let operator = Operator::new(&env, "service", None);
    (env, operator)
}

#[test]
fn without_configuration_there_are_three_demo_sites() {
    // In three regions, each proving its identity.
    let (_env, op) = unconfigured();
    let sites = op.admin_json(&["sites"]);
    let ids: Vec<&str> = sites
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["demo-east", "demo-west", "demo-north"]);
    for s in sites.as_array().unwrap() {
        assert_eq!(s["status"], "ok", "{s}");
        assert!(s["risk"].as_f64().is_some());
        assert_ne!(s["region"], "", "{s}");
    }
    assert_eq!(sites[1]["risk"].as_f64(), Some(0.4));
}

#[test]
fn a_risk_feed_changes_the_risk_of_the_sites_in_its_regions() {
    let (env, op) = unconfigured();
    let feed = env.path("feed.csv");
    fs::write(&feed, "region,earthquake,flood\ndemo-west,0.01,0.02\n").unwrap();
    let imported = op.admin_json(&["risk", "import", feed.to_str().unwrap()]);
    assert_eq!(imported["regions"], 1);
    let sites = op.admin_json(&["sites"]);
    assert!(
        (sites[1]["risk"].as_f64().unwrap() - 0.03).abs() < 1e-9,
        "{sites}"
    );
    assert_eq!(sites[0]["risk"].as_f64(), Some(0.2));
}

#[test]
fn a_malformed_risk_feed_is_refused_with_its_line() {
    let (env, op) = unconfigured();
    let feed = env.path("feed.csv");
    fs::write(&feed, "region,earthquake\ndemo-west,lots\n").unwrap();
    let out = op.admin_run(&["risk", "import", feed.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
}

#[test]
fn site_keys_rotate_per_site() {
    // Every site gets its first key when the sites are first opened.
    let (_env, op) = unconfigured();
    op.admin(&["sites"]);
    assert_eq!(
        op.admin_json(&["keys", "rotate", "demo-east"])["key_ref"],
        "demo-east/v2"
    );
    assert_eq!(
        op.admin_json(&["keys", "rotate", "demo-east"])["key_ref"],
        "demo-east/v3"
    );
    let out = op.admin_run(&["keys", "rotate", "nowhere"]);
    assert!(stderr(&out).contains("no site"), "{}", stderr(&out));
}

/// Two configured sites on one directory (osaka pointing at tokyo's storage), and a `gold`
/// level for premium members of two years.
fn configured() -> (Env, Operator) {
    let env = Env::new();
    let shared = env.path("shared-site");
    let config = env.path("server.toml");
    fs::write(
        &config,
        format!(
            r#"[[sites]]
id = "tokyo"
region = "kanto"
url = "file://{p}"
secret = "tokyo secret"
risk = 0.3

[[sites]]
id = "osaka"
region = "kansai"
url = "file://{p}"
secret = "osaka secret"
risk = 0.5

[[levels]]
level = "gold"
plans = ["premium"]
min_years = 2
sites = ["tokyo", "osaka"]
"#,
            p = shared.display()
        ),
    )
    .unwrap();
    let op = Operator::new(&env, "service-2", Some(&config));
    (env, op)
}

#[test]
fn a_site_on_another_sites_storage_fails_authentication() {
    let (_env, op) = configured();
    let sites = op.admin_json(&["sites"]);
    assert_eq!(sites[0]["status"], "ok");
    let osaka = sites[1]["status"].as_str().unwrap();
    assert!(
        osaka.contains("failed authentication") && osaka.contains("tokyo"),
        "{osaka}"
    );
}

#[test]
fn levels_come_from_the_plan_with_the_years_of_membership() {
    // By the configured rules.
    let (_env, op) = configured();
    for (name, plan, since) in [
        ("old", "premium", "2020-01-01"),
        ("new", "premium", "2026-11-01"),
    ] {
        let pw = op.password_file(name, "member password");
        op.admin(&[
            "user",
            "add",
            name,
            "--login-password-file",
            pw.to_str().unwrap(),
        ]);
        op.contract(
            name,
            &[
                "--plan",
                plan,
                "--home-region",
                "kanto",
                "--member-since",
                since,
            ],
        );
    }
    let level = |name: &str| {
        let u = op.user(name);
        (
            u["level"].as_str().unwrap().to_string(),
            u["contract"]["home_region"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(level("old"), ("gold".to_string(), "kanto".to_string()));
    assert_eq!(level("new"), ("standard".to_string(), "kanto".to_string()));
}
