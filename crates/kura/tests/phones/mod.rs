//! Phones backed up and restored by e-mail instructions (issue 15), end to end through real
//! Postfix and Dovecot: `kura mail` as the terminal, `kura phone` as the phone, a local
//! repository for the phone's snapshots.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kura_mail::Direction;
use kura_mail::auth::Key;
use kura_mail::message::{self, Outgoing};
use kura_mail::pairing::Pairing;
use kura_mail::payload::{Bundle, Secret};

use crate::fixture::mailsys::PASSWORD;
use crate::fixture::{
    Client, Env, MailSystem, Service, good_sites, parse_json, run_ok, stderr, wait_until,
};

const TERMINAL: &str = "terminal@example.org";
const PHONE: &str = "phone@example.org";
const OWNER: &str = "owner@example.org";

/// A terminal with a local repository, a phone paired with it, and the mail servers between.
struct Rig {
    env: Env,
    /// The service the terminal's repository is at, and the terminal as its user (none: a
    /// local repository).
    service: Option<(Service, Client)>,
    mail: MailSystem,
    phone: PathBuf,
    running: Option<Child>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop_phone();
        if std::thread::panicking() {
            let phone = fs::read_to_string(self.env.path("phone.log")).unwrap_or_default();
            eprintln!(
                "--- phone's log\n{phone}\n--- mail servers' logs\n{}",
                self.mail.logs()
            );
        }
    }
}

/// 500 vCard 4.0 cards and 20 other memory items, laid out as a phone's memory.
fn phone_memory(dir: &Path) {
    fs::create_dir_all(dir.join("contacts")).unwrap();
    fs::create_dir_all(dir.join("items")).unwrap();
    for i in 0..500u32 {
        let card = format!(
            "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:00000000-0000-4000-8000-{i:012}\r\n\
             FN:Contact {i}\r\nN:Family{i};Given{i};;;\r\nTEL;VALUE=uri;TYPE=cell:tel:+81-90-{:04}-{:04}\r\n\
             EMAIL:contact{i}@example.net\r\nNOTE:\u{8535} \u{2014} entry {i}\r\nEND:VCARD\r\n",
            i % 10_000,
            (i * 7) % 10_000
        );
        fs::write(dir.join(format!("contacts/{i:04}.vcf")), card).unwrap();
    }
    for i in 0..20u32 {
        let data: Vec<u8> = (0..(i * 997 + 13))
            .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i) >> 13) as u8)
            .collect();
        fs::write(dir.join(format!("items/memo-{i:02}")), data).unwrap();
    }
}

/// Every file under `dir` with its bytes, by relative path.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["contacts", "items"] {
        for e in fs::read_dir(dir.join(sub)).unwrap().flatten() {
            out.push((
                format!("{sub}/{}", e.file_name().to_string_lossy()),
                fs::read(e.path()).unwrap(),
            ));
        }
    }
    out.sort();
    out
}

impl Rig {
    fn new() -> Rig {
        Rig::paired(&[], false)
    }

    /// A rig whose phone was paired with `kura mail pair ... EXTRA`, whose terminal keeps its
    /// repository at a Kura service if `at_service`.
    fn paired(extra: &[&str], at_service: bool) -> Rig {
        let mail = MailSystem::start(&["terminal", "phone", "owner"]);
        let env = Env::new();
        let service = at_service.then(|| {
            let svc = Service::start(&env);
            svc.add_user("alice", "alice password");
            let client = Client::new(&env, &svc, "alice", "alice password");
            client.init();
            (svc, client)
        });
        if service.is_none() {
            env.init();
        }
        let config = format!(
            "address = \"{TERMINAL}\"\nmax_age_secs = 900\n\n\
             [imap]\nhost = \"127.0.0.1\"\nport = {}\nca_file = {:?}\n\
             username = \"{TERMINAL}\"\npassword = \"{PASSWORD}\"\n\n\
             [smtp]\nrelay = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n\
             username = \"{TERMINAL}\"\npassword = \"{PASSWORD}\"\n",
            mail.imap,
            mail.ca_file(),
            mail.smtp
        );
        fs::write(env.path("mail.toml"), config).unwrap();
        let rig = Rig {
            phone: env.path("phone"),
            env,
            service,
            mail,
            running: None,
        };
        let mut pair = vec!["mail", "pair", "phone1", "--address", PHONE];
        pair.extend_from_slice(extra);
        rig.ok(&pair);
        fs::write(rig.env.path("phone-password"), PASSWORD).unwrap();
        let (imap, smtp) = (
            format!("127.0.0.1:{}", rig.mail.imap),
            format!("127.0.0.1:{}", rig.mail.smtp),
        );
        let password_file = rig.env.path("phone-password");
        let key_file = rig.env.path("phone1.phone.key");
        rig.phone_ok(&[
            "phone",
            "init",
            rig.phone.to_str().unwrap(),
            "--address",
            PHONE,
            "--terminal",
            TERMINAL,
            "--owner",
            OWNER,
            "--key-file",
            key_file.to_str().unwrap(),
            "--imap",
            &imap,
            "--ca-file",
            rig.mail.ca_file().to_str().unwrap(),
            "--smtp",
            &smtp,
            "--smtp-security",
            "none",
            "--login-password-file",
            password_file.to_str().unwrap(),
        ]);
        let memory = rig.env.path("original");
        phone_memory(&memory);
        rig.phone_ok(&[
            "phone",
            "import",
            rig.phone.to_str().unwrap(),
            memory.to_str().unwrap(),
        ]);
        rig
    }

    /// `kura ARGS` as the terminal (its repository and mail.toml).
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = match &self.service {
            Some((_, client)) => client.cmd(args),
            None => self.env.cmd(args),
        };
        c.env("KURA_MAIL_CONFIG", self.env.path("mail.toml"));
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        run_ok(self.cmd(args))
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        parse_json(&self.ok(&a))
    }

    /// `kura ARGS` as the phone (nothing of the terminal's).
    fn phone_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.env.kura();
        c.args(args);
        c
    }

    /// The terminal's snapshots.
    fn snapshots(&self) -> Vec<serde_json::Value> {
        self.json(&["snapshots"]).as_array().unwrap().clone()
    }

    fn phone_ok(&self, args: &[&str]) -> String {
        run_ok(self.phone_cmd(args))
    }

    /// Starts `kura phone run` in the background.
    fn start_phone(&mut self) {
        self.start_phone_polling("1s");
    }

    /// Starts `kura phone run --poll POLL` in the background.
    fn start_phone_polling(&mut self, poll: &str) {
        let child = self
            .phone_cmd(&["phone", "run", self.phone.to_str().unwrap(), "--poll", poll])
            .stdout(Stdio::null())
            .stderr(
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.env.path("phone.log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        self.running = Some(child);
    }

    fn stop_phone(&mut self) {
        if let Some(mut c) = self.running.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The phone's memory as files.
    fn phone_files(&self) -> Vec<(String, Vec<u8>)> {
        let out = self.env.path(&format!("export-{}", rand_suffix()));
        self.phone_ok(&[
            "phone",
            "export",
            self.phone.to_str().unwrap(),
            out.to_str().unwrap(),
        ]);
        files(&out)
    }

    fn secret(&self) -> Secret {
        Pairing::load(&self.env.path("phone1.key"))
            .unwrap()
            .secret()
            .clone()
    }

    /// An instruction to the phone as the terminal would write it, dated `date`, with `id`.
    fn instruction(
        &self,
        secret: &Secret,
        direction: Direction,
        bundle: &Bundle,
        date: jiff::Timestamp,
        id: &str,
    ) -> Vec<u8> {
        let mac = secret.mac_key();
        let items: Vec<String> = bundle.items();
        message::write(
            &Outgoing {
                from: TERMINAL,
                to: PHONE,
                subject: "Kura",
                direction,
                in_reply_to: None,
                items: &items,
                digest: None,
                after: None,
                data: &secret.seal(bundle, id, direction),
            },
            date,
            id,
            &Key::Shared {
                secret: &mac,
                legacy: false,
            },
        )
        .unwrap()
    }
}

fn rand_suffix() -> String {
    let b: [u8; 6] = kura_core::crypto::random_bytes();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn a_phone_with_500_contacts_is_backed_up_and_restored_byte_for_byte_by_mail() {
    let mut rig = Rig::new();
    let original = rig.phone_files();
    assert_eq!(original.len(), 520);
    rig.start_phone();

    let started = std::time::Instant::now();
    let backed = rig.json(&["mail", "backup", "phone1", "--wait", "90s"]);
    let backup_secs = started.elapsed().as_secs_f64();
    assert_eq!(backed["state"], "stored", "{backed}\n{}", rig.mail.logs());
    let snapshot = backed["snapshot"].as_str().unwrap().to_string();
    let snaps = rig.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["tags"][0], "phone:phone1");

    // The phone loses its memory (another phone's data arrives instead) and gets it back.
    let other = rig.env.path("other");
    fs::create_dir_all(other.join("items")).unwrap();
    fs::write(other.join("items/memo-00"), b"not what it was").unwrap();
    rig.phone_ok(&[
        "phone",
        "import",
        rig.phone.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    assert_ne!(rig.phone_files(), original);

    let started = std::time::Instant::now();
    let restored = rig.json(&[
        "mail",
        "restore",
        "phone1",
        "--snapshot",
        &snapshot[..8],
        "--wait",
        "90s",
    ]);
    let restore_secs = started.elapsed().as_secs_f64();
    assert_eq!(restored["state"], "completed", "{restored}");
    // The completion came after the write: the memory is the original when it is reported.
    assert_eq!(rig.phone_files(), original);
    eprintln!("500-contact round trip: backup {backup_secs:.1} s, restore {restore_secs:.1} s");

    // Only some items: the address book alone comes back, the memo stays as it is now.
    fs::write(
        rig.phone.join("memory/data/items/memo-00"),
        b"changed since",
    )
    .unwrap();
    fs::remove_file(rig.phone.join("memory/data/contacts/0000.vcf")).unwrap();
    let partial = rig.json(&[
        "mail", "restore", "phone1", "--items", "contacts", "--wait", "90s",
    ]);
    assert_eq!(partial["state"], "completed");
    let now = rig.phone_files();
    assert!(now.iter().any(|(p, _)| p == "contacts/0000.vcf"));
    assert!(now.contains(&("items/memo-00".to_string(), b"changed since".to_vec())));

    // The owner was told of each instruction, with counts.
    wait_until(Duration::from_secs(30), "the owner's notices", || {
        rig.mail.bodies("owner").join("\n").matches("wrote").count() >= 2
    });
    let notices = rig.mail.bodies("owner").join("\n");
    assert!(
        notices.contains("sent back 520 entries (500 contacts)"),
        "{notices}"
    );
    assert!(!notices.contains("REFUSED"), "{notices}");

    let status = rig.json(&["mail", "status"]);
    let states: Vec<&str> = status["instructions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["completed", "completed", "stored"]);
    let log = rig.ok(&["mail", "log"]);
    assert!(log.contains("backup stored as snapshot"), "{log}");
}

#[test]
fn forged_replayed_stale_changed_and_oversized_instructions_are_refused_and_noticed() {
    let rig = Rig::new();
    let original = rig.phone_files();
    let secret = rig.secret();
    let now = jiff::Timestamp::now();
    let mut restore = Bundle::default();
    restore
        .insert("items/memo-00", b"an attacker's memo".to_vec())
        .unwrap();
    let wrong = Secret::random();
    let genuine = rig.instruction(
        &secret,
        Direction::Backup,
        &Bundle::default(),
        now,
        "<g1@example.org>",
    );
    let text = String::from_utf8(rig.instruction(
        &secret,
        Direction::Restore,
        &restore,
        now,
        "<g2@example.org>",
    ))
    .unwrap();
    let body_at = text.find("\r\n\r\n").unwrap() + 10;
    let mut changed = text.clone().into_bytes();
    changed[body_at] = if changed[body_at] == b'A' { b'B' } else { b'A' };
    let forged_mac = text.replace("b=", "b=AAAA");
    let truncated = &text.as_bytes()[..text.len() - 40];
    // The body replaced by something that is not base64 at all.
    let malformed = format!("{}\r\n\r\n!!! not base64 !!!\r\n", &text[..body_at - 10]);
    let stale = rig.instruction(
        &secret,
        Direction::Backup,
        &Bundle::default(),
        now - jiff::SignedDuration::from_hours(1),
        "<g3@example.org>",
    );
    let wrong_key = rig.instruction(
        &wrong,
        Direction::Restore,
        &restore,
        now,
        "<g4@example.org>",
    );
    let oversized = {
        let mut m = b"From: terminal@example.org\r\nTo: phone@example.org\r\nSubject: big\r\n\
                      MB-Direction-Code: restore\r\n\r\n"
            .to_vec();
        while m.len() <= message::MAX_MESSAGE + 1000 {
            m.extend_from_slice(&[b'A'; 76]);
            m.extend_from_slice(b"\r\n");
        }
        m
    };
    let ordinary = b"From: friend@example.net\r\nTo: phone@example.org\r\nSubject: hello\r\n\
                     Message-Id: <hello@example.net>\r\n\r\nSee you at eight.\r\n";
    for m in [
        &genuine[..],
        &genuine[..],
        &changed,
        forged_mac.as_bytes(),
        truncated,
        malformed.as_bytes(),
        &stale,
        &wrong_key,
        &oversized,
        ordinary,
    ] {
        rig.mail.send(TERMINAL, PHONE, m);
    }
    wait_until(Duration::from_secs(60), "delivery to the phone", || {
        rig.mail.inbox("phone").len() == 10
    });
    let out = rig
        .phone_cmd(&[
            "phone",
            "run",
            rig.phone.to_str().unwrap(),
            "--once",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    for why in [
        "seen before (a replay)",
        "does not match its hash",
        "does not check (forged, or another key)",
        "s old",
        "was not read",
    ] {
        assert!(log.contains(why), "no log line says {why:?}:\n{log}");
    }
    // Nothing written; one answer (to the genuine instruction) and nothing else sent back.
    assert_eq!(rig.phone_files(), original);
    wait_until(Duration::from_secs(30), "the answer and the notice", || {
        rig.mail.inbox("terminal").len() == 1 && !rig.mail.inbox("owner").is_empty()
    });
    let notice = rig.mail.bodies("owner").join("\n");
    assert_eq!(notice.matches("REFUSED").count() - 1, 8, "{notice}");
    assert!(notice.contains("sent back 520 entries"), "{notice}");
    // The ordinary mail is still in the phone's mailbox, unread; the oversized one too.
    let left = rig.mail.inbox("phone");
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().any(|m| m.contains("See you at eight.")));
    assert_eq!(rig.mail.seen_flags("phone"), [false, false], "still unread");

    // The terminal refuses an answer to an instruction it never sent.
    let answer = {
        let mac = secret.mac_key();
        message::write(
            &Outgoing {
                from: PHONE,
                to: TERMINAL,
                subject: "Kura: backup",
                direction: Direction::Backup,
                in_reply_to: Some("<never-sent@example.org>"),
                items: &[],
                digest: None,
                after: None,
                data: &secret.seal(&Bundle::default(), "<a1@example.org>", Direction::Backup),
            },
            now,
            "<a1@example.org>",
            &Key::Shared {
                secret: &mac,
                legacy: false,
            },
        )
        .unwrap()
    };
    rig.mail.send(PHONE, TERMINAL, &answer);
    wait_until(Duration::from_secs(60), "delivery to the terminal", || {
        rig.mail.inbox("terminal").len() == 2
    });
    let received = rig.json(&["mail", "receive"]);
    let lines = received["received"].to_string();
    assert!(lines.contains("never sent"), "{lines}");
    assert!(rig.snapshots().is_empty(), "nothing stored");
}

#[test]
fn a_scheduled_phone_backup_runs_by_itself() {
    let mut rig = Rig::new();
    rig.start_phone();
    rig.ok(&["mail", "schedule", "add", "phone1", "--every", "1h"]);
    let listed = rig.json(&["mail", "schedule", "list"]);
    assert_eq!(listed[0]["phone"], "phone1");
    // The agent, left running, finds the entry due and backs the phone up by itself.
    let mut agent = rig
        .cmd(&["agent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(120), "the scheduled backup", || {
        rig.json(&["mail", "schedule", "list"])[0]["last_outcome"]["ok"] == true
    });
    let _ = agent.kill();
    let _ = agent.wait();
    let snaps = rig.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["tags"][0], "phone:phone1");
}

#[test]
fn a_restore_cut_off_by_the_mail_server_completes_once_when_it_is_back() {
    let mut rig = Rig::new();
    let original = rig.phone_files();
    rig.start_phone();
    rig.json(&["mail", "backup", "phone1", "--wait", "90s"]);
    fs::write(rig.phone.join("memory/data/items/memo-01"), b"changed").unwrap();

    // The mailbox server goes down: the instruction waits in Postfix's queue, no answer comes.
    rig.mail.stop_imap();
    let out = rig
        .cmd(&["mail", "restore", "phone1", "--wait", "3s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(16), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stays outstanding"),
        "{}",
        stderr(&out)
    );
    assert_ne!(rig.phone_files(), original, "nothing was written yet");

    // Back: Postfix delivers, the phone writes and answers, the terminal takes it in once.
    rig.mail.start_imap();
    wait_until(Duration::from_secs(120), "the restore", || {
        rig.phone_files() == original
    });
    wait_until(Duration::from_secs(60), "the completion", || {
        rig.json(&["mail", "receive"])["received"]
            .to_string()
            .contains("confirmed the restore")
    });
    let again = rig.json(&["mail", "receive"]);
    assert_eq!(again["received"], serde_json::json!([]));
    let status = rig.json(&["mail", "status"]);
    assert_eq!(status["instructions"][0]["state"], "completed");
    let log = rig.ok(&["mail", "log"]);
    assert_eq!(
        log.matches("restore completed on the phone").count(),
        1,
        "{log}"
    );
}

#[test]
fn a_lost_phone_is_backed_up_and_then_wiped() {
    let mut rig = Rig::new();
    rig.start_phone();
    let done = rig.json(&["mail", "backup", "phone1", "--wipe", "--wait", "90s"]);
    assert_eq!(done["state"], "stored");
    wait_until(Duration::from_secs(30), "the wipe", || {
        rig.phone_files().is_empty()
    });
    // What it held is in the snapshot.
    let restored = rig.env.path("restored");
    rig.ok(&["restore", "latest", "--target", restored.to_str().unwrap()]);
    let staged = fs::read_dir(&restored).unwrap().count();
    assert!(staged > 0);
    wait_until(Duration::from_secs(30), "the owner's notice", || {
        rig.mail.bodies("owner").join("\n").contains("WIPED")
    });
}

#[test]
fn a_phone_paired_with_ed25519_keys_signs_its_answers_and_takes_no_hmac() {
    let mut rig = Rig::paired(&["--ed25519"], false);
    let original = rig.phone_files();
    // An instruction with a valid HMAC under the shared secret: refused, as this pairing
    // signs with Ed25519 only.
    let secret = rig.secret();
    let mut restore = Bundle::default();
    restore
        .insert("items/memo-00", b"not by the terminal".to_vec())
        .unwrap();
    let hmac = rig.instruction(
        &secret,
        Direction::Restore,
        &restore,
        jiff::Timestamp::now(),
        "<hmac@example.org>",
    );
    rig.mail.send(TERMINAL, PHONE, &hmac);
    wait_until(Duration::from_secs(60), "delivery to the phone", || {
        rig.mail.inbox("phone").len() == 1
    });
    let out = rig
        .phone_cmd(&["phone", "run", rig.phone.to_str().unwrap(), "--once"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("algorithm hmac-sha256 where ed25519-sha256 is required"),
        "{}",
        stderr(&out)
    );
    assert_eq!(rig.phone_files(), original);

    rig.start_phone();
    let backed = rig.json(&["mail", "backup", "phone1", "--wait", "90s"]);
    assert_eq!(backed["state"], "stored", "{backed}");
    assert_eq!(rig.snapshots().len(), 1);
}

#[test]
fn the_mailbox_is_read_over_tls_and_a_server_it_cannot_trust_is_refused() {
    let rig = Rig::new();
    assert!(rig.json(&["mail", "receive"])["received"].is_array());
    // Without the test authority the server's certificate is not trusted: no login is tried.
    let config = fs::read_to_string(rig.env.path("mail.toml")).unwrap();
    let untrusting: String = config
        .lines()
        .filter(|l| !l.starts_with("ca_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(rig.env.path("mail.toml"), untrusting).unwrap();
    let out = rig.cmd(&["mail", "receive"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));
    let logins = fs::read_to_string(rig.mail.dovecot_log()).unwrap();
    assert_eq!(
        logins.matches("Login: user=<terminal@example.org>").count(),
        1
    );
    assert!(logins.contains("TLS"), "{logins}");
}

#[test]
fn a_flood_of_forged_instructions_changes_nothing_and_costs_the_owner_one_notice() {
    let rig = Rig::new();
    let original = rig.phone_files();
    let wrong = Secret::random();
    let mut restore = Bundle::default();
    restore
        .insert("items/memo-00", b"flooded".to_vec())
        .unwrap();
    for i in 0..40 {
        let forged = rig.instruction(
            &wrong,
            Direction::Restore,
            &restore,
            jiff::Timestamp::now(),
            &format!("<flood{i}@example.org>"),
        );
        rig.mail.send(TERMINAL, PHONE, &forged);
    }
    wait_until(Duration::from_secs(60), "delivery to the phone", || {
        rig.mail.inbox("phone").len() == 40
    });
    let out = rig
        .phone_cmd(&["phone", "run", rig.phone.to_str().unwrap(), "--once"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out).matches("refused").count(), 40);
    assert_eq!(rig.phone_files(), original);
    assert!(
        rig.mail.inbox("phone").is_empty(),
        "refused instructions are removed"
    );
    wait_until(Duration::from_secs(30), "the owner's notice", || {
        !rig.mail.inbox("owner").is_empty()
    });
    let notices = rig.mail.bodies("owner");
    assert_eq!(notices.len(), 1, "one notice for the whole pass");
    assert!(notices[0].contains("40 of them REFUSED"), "{}", notices[0]);
    assert!(rig.mail.inbox("terminal").is_empty(), "nothing sent back");
}

#[test]
fn a_phone_backed_up_to_the_service_is_restored_from_it() {
    let mut rig = Rig::paired(&[], true);
    let original = rig.phone_files();
    rig.start_phone();
    let backed = rig.json(&["mail", "backup", "phone1", "--wait", "90s"]);
    assert_eq!(backed["state"], "stored", "{backed}");
    // The service holds the phone's snapshot as it does any other: every object in two good
    // copies on two sites.
    let snaps = rig.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["tags"][0], "phone:phone1");
    let objects = good_sites(&rig.json(&["conditions"]));
    assert!(!objects.is_empty());
    for mut sites in objects {
        sites.dedup();
        assert_eq!(sites.len(), 2, "{sites:?}");
    }

    fs::remove_dir_all(rig.phone.join("memory/data/contacts")).unwrap();
    let restored = rig.json(&["mail", "restore", "phone1", "--wait", "90s"]);
    assert_eq!(restored["state"], "completed", "{restored}");
    assert_eq!(rig.phone_files(), original);
}

#[test]
fn a_running_phone_stops_on_sigterm_without_waiting_out_its_poll() {
    let mut rig = Rig::new();
    rig.start_phone_polling("10m");
    wait_until(Duration::from_secs(60), "the phone's login", || {
        fs::read_to_string(rig.mail.dovecot_log())
            .unwrap_or_default()
            .contains("Login: user=<phone@example.org>")
    });
    let child = rig.running.as_mut().unwrap();
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_until(Duration::from_secs(30), "the phone to stop", || {
        child.try_wait().unwrap().is_some()
    });
    assert!(child.try_wait().unwrap().unwrap().success());
}
