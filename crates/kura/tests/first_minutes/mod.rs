//! The first minutes with kura as a new user meets them (issue 12): passphrases, the recovery
//! code, output into a pipe, what kura says while the service is away, wording, the config
//! file, and quickstart.

use std::fs;
use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use crate::fixture::*;

#[test]
fn an_empty_new_passphrase_is_refused_from_every_source() {
    let env = Env::new();
    let empty = env.path("empty.pw");
    fs::write(&empty, "\n").unwrap();
    let from_env = env
        .cmd(&["init"])
        .env("KURA_PASSWORD", "")
        .output()
        .unwrap();
    let from_file = env
        .cmd(&["init", "--password-file", empty.to_str().unwrap()])
        .env_remove("KURA_PASSWORD")
        .output()
        .unwrap();
    for out in [from_env, from_file] {
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("an empty passphrase is not allowed"),
            "{}",
            stderr(&out)
        );
    }
    assert!(!env.repo.exists(), "no repository was made");
}

#[test]
fn init_quiet_still_shows_the_recovery_code_once() {
    let env = Env::new();
    let out = env.run(&["init", "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "--quiet prints nothing on stdout");
    let said = stderr(&out);
    let code = said
        .trim()
        .strip_prefix("recovery code (shown once; keep it offline): ")
        .unwrap_or_else(|| panic!("{said}"));
    // The code shown is the one that unlocks the repository.
    let by_code = env
        .cmd(&["snapshots", "--json"])
        .env_remove("KURA_PASSWORD")
        .env("KURA_RECOVERY_CODE", code)
        .output()
        .unwrap();
    assert!(by_code.status.success(), "{}", stderr(&by_code));
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let empty = env.backup(&[src.to_str().unwrap()]);
    // Far more output than a pipe holds (64 KiB), so kura is still writing when it closes.
    make_tree(&src, 2000, 1);
    env.backup(&[src.to_str().unwrap()]);
    let first = empty["id"].as_str().unwrap();
    let listings: [&[&str]; 3] = [
        &["ls", "latest"],
        &["ls", "latest", "--json"],
        &["diff", first, "latest"],
    ];
    for args in listings {
        let mut child = env
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read the start, then close the pipe, as `| head -1` does.
        let mut start = [0u8; 16];
        child.stdout.take().unwrap().read_exact(&mut start).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}

#[test]
fn an_unreachable_service_is_named_at_once_while_kura_retries() {
    let env = Env::new();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = env
        .kura()
        .args(["snapshots", "--retry-secs", "30", "--user", "alice"])
        .arg("--repo")
        .arg(format!("https://127.0.0.1:{port}"))
        .env("KURA_USER_PASSWORD", "pw")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let said = Said::follow(child.stderr.take().unwrap());
    // Long before the 30 s of retries are over.
    wait_until(
        Duration::from_secs(10),
        "kura to say what it is doing",
        || {
            said.text()
                .contains("the service cannot be reached; retrying for up to 30 s")
        },
    );
    assert!(child.try_wait().unwrap().is_none(), "it is still retrying");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn counts_agree_with_their_number() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("only"), b"one file").unwrap();
    let out = env.ok(&["backup", src.to_str().unwrap()]);
    assert!(out.contains(": 1 file, "), "{out}");
    let out = env.ok(&["snapshots"]);
    assert!(out.trim_end().ends_with("\n1 snapshot"), "{out}");
    let out = env.ok(&["check"]);
    assert!(out.contains("checked 1 snapshot, "), "{out}");
}

#[test]
fn the_log_shows_the_type_a_job_ran_as() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 5, 2);
    // No full backup yet: the incremental runs as full.
    let v = env.backup(&[src.to_str().unwrap(), "--type", "incremental"]);
    assert_eq!(v["type"], "full", "{v}");
    let log = env.json(&["log"]);
    assert_eq!(log[0]["type"], "full", "{log}");
}

#[test]
fn the_config_file_takes_the_service_login() {
    let env = Env::new();
    let config = env.path("config.toml");
    fs::write(
        &config,
        "repo = \"https://127.0.0.1:9\"\nuser = \"alice\"\nuser_password_file = \"/nonexistent/pw\"\nretry_secs = 1\n",
    )
    .unwrap();
    // The config's user is taken (no 'unknown field'), and so is its password file.
    let out = env
        .kura()
        .args(["snapshots", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert!(!said.contains("unknown field"), "{said}");
    assert!(
        said.contains("reading user password file /nonexistent/pw"),
        "{said}"
    );
}

#[test]
fn quickstart_checks_its_directory_before_making_anything() {
    let env = Env::new();
    let out = env.run(&["quickstart", env.path("missing").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
    assert!(!env.repo.exists(), "no repository was made for nothing");
    let src = env.path("src");
    make_tree(&src, 3, 3);
    let out = env.ok(&["quickstart", src.to_str().unwrap()]);
    assert!(out.contains("kura restore latest --target"), "{out}");
}

#[test]
fn help_groups_the_commands_and_keeps_repository_options_where_they_apply() {
    let env = Env::new();
    let top = env.ok(&["--help"]);
    for heading in [
        "Back up and restore:",
        "Repository:",
        "Service member:",
        "Service operator:",
    ] {
        assert!(top.contains(heading), "{top}");
    }
    let ls = env.ok(&["ls", "--help"]);
    assert!(
        ls.contains("Global options:")
            && ls.contains("Service options (for an https:// repository):"),
        "{ls}"
    );
    assert!(ls.contains("Snapshot selection:"), "{ls}");
    for cmd in [
        &["serve", "--help"][..],
        &["admin", "user", "add", "--help"],
        &["cert", "create", "--help"],
    ] {
        let help = env.ok(cmd);
        assert!(
            !help.contains("--repo") && !help.contains("--server-fingerprint"),
            "{cmd:?}: {help}"
        );
    }
    let schedule = env.ok(&["schedule", "add", "--help"]);
    assert!(
        schedule.contains("--state-dir") && !schedule.contains("--user "),
        "{schedule}"
    );
}

#[test]
fn completion_scripts_and_manual_pages_cover_every_command() {
    let env = Env::new();
    let script = |shell: &str| run_ok(env.kura().args(["completion", shell]));
    let bash = script("bash");
    for name in [
        "backup",
        "restore",
        "wallet",
        "keyman",
        "escrow",
        "--owner-password-file",
    ] {
        assert!(bash.contains(name), "bash completion lacks {name}");
    }
    assert!(script("zsh").starts_with("#compdef kura"));
    assert!(script("fish").contains("complete -c kura"));
    assert!(
        !env.kura()
            .args(["completion", "tcsh"])
            .output()
            .unwrap()
            .status
            .success()
    );

    let dir = env.path("man1");
    let written = run_ok(env.kura().args(["man", "--json"]).arg(&dir));
    let written: Vec<String> = serde_json::from_str(&written).unwrap();
    for page in [
        "kura.1",
        "kura-backup.1",
        "kura-wallet-escrow.1",
        "kura-key-recover.1",
    ] {
        assert!(written.contains(&page.to_string()), "{page} not written");
        let text = fs::read_to_string(dir.join(page)).unwrap();
        assert!(text.contains(".TH"), "{page} is not a manual page");
    }
    let escrow = fs::read_to_string(dir.join("kura-wallet-escrow.1")).unwrap();
    assert!(escrow.contains("owner\\-password\\-file"), "{escrow}");
}
