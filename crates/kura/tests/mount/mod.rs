//! `kura mount`: snapshots as a read-only file system through the kernel's FUSE, read back
//! and compared, then unmounted by a signal or by `fusermount3 -u`.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::fixture::*;

/// Starts `mount`, a `kura mount AT` command, and waits until the kernel shows `snapshots`
/// snapshots under `AT/ids`.
fn mounted(mut mount: Command, at: &Path, snapshots: usize) -> Child {
    fs::create_dir_all(at).unwrap();
    let child = mount
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(30), "the mount to appear", || {
        fs::read_dir(at.join("ids")).is_ok_and(|d| d.count() == snapshots)
    });
    child
}

/// Waits for `child` to end; its exit status.
fn ended(mut child: Child) -> std::process::ExitStatus {
    wait_until(Duration::from_secs(30), "kura mount to end", || {
        child.try_wait().unwrap()
    })
}

#[test]
fn a_mount_shows_each_snapshot_by_id_and_date_and_reads_files_back_exactly() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 10, 3);
    fs::write(src.join("big.bin"), noise(3_000_000, 5)).unwrap();
    std::os::unix::fs::symlink("big.bin", src.join("link")).unwrap();
    let first = env.backup(&[src.to_str().unwrap(), "--tag", "first"]);
    let before = contents(&src);
    fs::write(src.join("d0/f0.bin"), b"changed after the first backup").unwrap();
    env.backup(&[src.to_str().unwrap()]);

    let at = env.path("mnt");
    let child = mounted(env.cmd(&["mount", at.to_str().unwrap()]), &at, 2);
    let inside = |p: &Path| p.join(src.strip_prefix("/").unwrap());
    // latest is the newest, and reads back exactly what is on disk now.
    let latest = at.join("snapshots/latest");
    assert!(
        fs::symlink_metadata(&latest)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(contents(&inside(&latest)), contents(&src));
    assert_eq!(
        fs::read_link(inside(&latest).join("link")).unwrap(),
        Path::new("big.bin")
    );
    // The first snapshot, by its id and by its tag, is the tree as it was.
    let short = first["short_id"].as_str().unwrap();
    assert_eq!(contents(&inside(&at.join("ids").join(short))), before);
    assert_eq!(contents(&inside(&at.join("tags/first/latest"))), before);
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        fs::read_dir(at.join("hosts").join(host.trim()))
            .unwrap()
            .count(),
        3,
        "two snapshots and latest"
    );
    // Metadata comes through: sizes and modes.
    let big = fs::metadata(inside(&latest).join("big.bin")).unwrap();
    assert_eq!(big.len(), 3_000_000);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        big.permissions().mode() & 0o777,
        fs::metadata(src.join("big.bin"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    );
    // Read-only.
    let err = fs::write(inside(&latest).join("new.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");

    // SIGTERM unmounts and ends it cleanly.
    // SAFETY: kill sends a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(ended(child).success());
    assert_eq!(fs::read_dir(&at).unwrap().count(), 0, "unmounted");

    // Unmounted from outside, it ends by itself.
    let child = mounted(env.cmd(&["mount", at.to_str().unwrap()]), &at, 2);
    let out = Command::new("fusermount3")
        .arg("-u")
        .arg(&at)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(ended(child).success());
    let out = env.run(&["mount", env.path("nowhere").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nowhere"), "{}", stderr(&out));
}

#[test]
fn a_service_repository_mounts_too_and_takes_piped_and_listed_backups() {
    let alice = Member::start("alice");
    alice.init();
    let src = alice.path("src");
    make_tree(&src, 8, 6);
    let list = alice.path("list.txt");
    fs::write(&list, format!("{}\n", src.display())).unwrap();
    let dry = alice.json(&[
        "backup",
        "--dry-run",
        "--files-from",
        list.to_str().unwrap(),
    ]);
    assert_eq!(dry["summary"]["files"], 8, "{dry}");
    assert!(alice.json(&["snapshots"]).as_array().unwrap().is_empty());
    alice.ok(&["backup", "--files-from", list.to_str().unwrap()]);
    let mut c = alice.cmd(&["backup", "--stdin", "--stdin-filename", "notes.txt"]);
    c.stdin(Stdio::piped()).stdout(Stdio::null());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"piped in\n")
            .unwrap();
    }
    assert!(child.wait().unwrap().success());

    let at = alice.path("mnt");
    let child = mounted(alice.cmd(&["mount", at.to_str().unwrap()]), &at, 2);
    assert_eq!(
        fs::read(at.join("snapshots/latest/notes.txt")).unwrap(),
        b"piped in\n"
    );
    // The listed backup, by its id: the one that holds src.
    let listed = fs::read_dir(at.join("ids"))
        .unwrap()
        .map(|e| e.unwrap().path().join(src.strip_prefix("/").unwrap()))
        .find(|p| p.exists())
        .unwrap();
    assert_eq!(contents(&listed), contents(&src));
    // SAFETY: kill sends a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(ended(child).success());
}
