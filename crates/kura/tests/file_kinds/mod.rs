//! Every kind of file comes back as it was: FIFOs, device nodes (as root), extended
//! attributes, sparse files, symlink times; and `--one-file-system` and `--exclude-caches`
//! leave out what they say.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use crate::fixture::*;

fn am_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn c(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

/// Backs up `src` and restores it into a new target; where it landed.
fn round_trip(env: &Env, src: &Path) -> (std::path::PathBuf, std::process::Output) {
    env.backup(&[src.to_str().unwrap()]);
    let t = env.path("restored");
    let out = env.run(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    (restored(&t, src), out)
}

#[test]
fn fifos_xattrs_sparse_files_and_symlink_times_come_back() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    assert_eq!(
        unsafe { libc::mkfifo(c(&src.join("pipe")).as_ptr(), 0o640) },
        0
    );
    fs::write(src.join("tagged"), b"with attributes").unwrap();
    let rc = unsafe {
        libc::lsetxattr(
            c(&src.join("tagged")).as_ptr(),
            c"user.kura.note".as_ptr(),
            b"kept".as_ptr().cast(),
            4,
            0,
        )
    };
    assert_eq!(rc, 0, "this filesystem takes user extended attributes");
    let sparse = fs::File::create(src.join("sparse")).unwrap();
    sparse.set_len(64 << 20).unwrap();
    drop(sparse);
    std::os::unix::fs::symlink("tagged", src.join("link")).unwrap();
    let touched = Command::new("touch")
        .args(["-h", "-d", "2001-02-03 04:05:06"])
        .arg(src.join("link"))
        .status()
        .unwrap();
    assert!(touched.success());

    let (out, said) = round_trip(&env, &src);
    let pipe = fs::symlink_metadata(out.join("pipe")).unwrap();
    assert!(pipe.file_type().is_fifo());
    assert_eq!(pipe.mode() & 0o7777, 0o640);
    let mut value = [0u8; 16];
    let n = unsafe {
        libc::lgetxattr(
            c(&out.join("tagged")).as_ptr(),
            c"user.kura.note".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    assert_eq!(
        &value[..n.max(0) as usize],
        b"kept",
        "the attribute came back"
    );
    let s = fs::metadata(out.join("sparse")).unwrap();
    assert_eq!(s.len(), 64 << 20);
    assert!(
        s.blocks() * 512 < 1 << 20,
        "restored sparse: {} blocks",
        s.blocks()
    );
    assert_eq!(
        fs::symlink_metadata(out.join("link")).unwrap().mtime(),
        fs::symlink_metadata(src.join("link")).unwrap().mtime(),
        "the symlink's own time"
    );
    assert!(String::from_utf8_lossy(&said.stdout).contains("1 special file"));
}

#[test]
fn device_nodes_come_back_as_root() {
    if !am_root() {
        eprintln!("skipped: making a device node needs root");
        return;
    }
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let dev = libc::makedev(1, 3);
    let rc = unsafe { libc::mknod(c(&src.join("null")).as_ptr(), libc::S_IFCHR | 0o600, dev) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let (out, _) = round_trip(&env, &src);
    let m = fs::symlink_metadata(out.join("null")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), dev);
    let ls = env.ok(&["ls", "latest"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("chardev") && l.ends_with("/null")),
        "{ls}"
    );
}

#[test]
fn one_file_system_keeps_a_mount_point_empty() {
    if !am_root() {
        eprintln!("skipped: mounting a filesystem needs root");
        return;
    }
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(src.join("mnt")).unwrap();
    fs::write(src.join("here.txt"), b"same filesystem").unwrap();
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "kura-test",
            src.join("mnt").to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs");
    fs::write(src.join("mnt/other.txt"), b"another filesystem").unwrap();
    let v = env.backup(&[src.to_str().unwrap(), "--one-file-system"]);
    let all = env.backup(&[src.to_str().unwrap()]);
    let _ = Command::new("umount").arg(src.join("mnt")).status();
    assert_eq!(v["summary"]["files"], 1, "{v}");
    assert_eq!(
        all["summary"]["files"], 2,
        "without the option it crosses: {all}"
    );
    let listed = env.json(&["ls", v["id"].as_str().unwrap()]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        names.iter().any(|p| p.ends_with("/mnt")),
        "the mount point stays: {names:?}"
    );
}

#[test]
fn exclude_caches_leaves_out_tagged_directories() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(src.join("cache")).unwrap();
    fs::write(
        src.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n",
    )
    .unwrap();
    fs::write(src.join("cache/blob"), noise(100_000, 3)).unwrap();
    fs::write(src.join("work.txt"), b"work").unwrap();
    let v = env.backup(&[src.to_str().unwrap(), "--exclude-caches"]);
    assert_eq!(v["summary"]["files"], 2, "work.txt and the tag itself: {v}");
}

#[test]
fn setuid_bits_come_back_only_when_asked() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("tool"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    let (out, said) = round_trip(&env, &src);
    assert_eq!(
        fs::metadata(out.join("tool")).unwrap().mode() & 0o7777,
        0o755
    );
    assert!(
        stderr(&said).contains("setuid/setgid bits left off 1 file"),
        "{}",
        stderr(&said)
    );
    let kept = env.path("kept");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        kept.to_str().unwrap(),
        "--keep-setuid",
    ]);
    let mode = fs::metadata(restored(&kept, &src).join("tool"))
        .unwrap()
        .mode();
    assert_eq!(mode & 0o7777, 0o4755);
}
