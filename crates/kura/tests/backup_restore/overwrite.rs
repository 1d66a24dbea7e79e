//! A restore over an existing tree replaces only what it restores: `--overwrite
//! if-changed|always|never`, and nothing of another kind is deleted unless asked.

use std::fs;
use std::os::unix::fs::MetadataExt;

use super::{backed_up_tree, restore_latest};
use crate::fixture::*;

#[test]
fn restoring_again_replaces_what_differs_and_leaves_what_is_equal() {
    let (env, src, _) = backed_up_tree();
    let out = restore_latest(&env, &src, "target");
    fs::write(out.join("d1/f1.bin"), b"edited after restore").unwrap();
    let untouched = fs::metadata(out.join("d2/f2.bin")).unwrap().ino();
    let t = env.path("target");
    let said = env.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(contents(&src), contents(&out));
    assert!(
        said.contains("1 file,") && said.contains("already there and left alone"),
        "{said}"
    );
    assert_eq!(
        fs::metadata(out.join("d2/f2.bin")).unwrap().ino(),
        untouched,
        "an equal file is not rewritten"
    );
}

#[test]
fn a_directory_in_the_way_of_a_file_is_kept_and_reported() {
    let (env, src, _) = backed_up_tree();
    let t = env.path("target");
    let landed = restored(&t, &src);
    fs::create_dir_all(landed.join("exec.sh/inner")).unwrap();
    fs::write(landed.join("exec.sh/inner/p"), b"precious").unwrap();
    let out = env.run(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "partial");
    let err = stderr(&out);
    assert!(
        err.contains("exec.sh: a directory is in the way of this file")
            && err.contains("--overwrite always"),
        "{err}"
    );
    assert_eq!(
        fs::read(landed.join("exec.sh/inner/p")).unwrap(),
        b"precious"
    );
    assert_eq!(
        fs::read(landed.join("d1/f1.bin")).unwrap(),
        fs::read(src.join("d1/f1.bin")).unwrap(),
        "everything else is restored"
    );
}

#[test]
fn a_single_file_restored_onto_a_directory_keeps_the_directory() {
    let (env, src, _) = backed_up_tree();
    let rx = env.path("rx");
    fs::create_dir_all(rx.join("exec.sh/inner")).unwrap();
    fs::write(rx.join("exec.sh/inner/p"), b"precious").unwrap();
    let spec = format!("latest:{}", src.join("exec.sh").display());
    let out = env.run(&["restore", &spec, "--target", rx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(fs::read(rx.join("exec.sh/inner/p")).unwrap(), b"precious");
}

#[test]
fn a_file_in_the_way_of_a_directory_is_kept_and_reported() {
    let (env, src, _) = backed_up_tree();
    let t = env.path("target");
    let landed = restored(&t, &src);
    fs::create_dir_all(&landed).unwrap();
    fs::write(
        landed.join("d2"),
        b"a file where the snapshot has a directory",
    )
    .unwrap();
    let out = env.run(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.contains(
            "d2: a file is in the way of this directory; left as it is, nothing under it restored"
        ),
        "{err}"
    );
    assert_eq!(
        fs::read(landed.join("d2")).unwrap(),
        b"a file where the snapshot has a directory"
    );
    assert!(landed.join("d3/f3.bin").is_file());
}

#[test]
fn overwrite_never_leaves_every_existing_file() {
    let (env, src, _) = backed_up_tree();
    let out = restore_latest(&env, &src, "target");
    fs::write(out.join("d1/f1.bin"), b"mine now").unwrap();
    fs::remove_file(out.join("d3/f3.bin")).unwrap();
    let t = env.path("target");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        t.to_str().unwrap(),
        "--overwrite",
        "never",
    ]);
    assert_eq!(fs::read(out.join("d1/f1.bin")).unwrap(), b"mine now");
    assert!(
        out.join("d3/f3.bin").is_file(),
        "what is missing is restored"
    );
}

#[test]
fn overwrite_always_replaces_a_directory_in_the_way() {
    let (env, src, _) = backed_up_tree();
    let t = env.path("target");
    let landed = restored(&t, &src);
    fs::create_dir_all(landed.join("exec.sh/inner")).unwrap();
    fs::create_dir_all(&landed).unwrap();
    fs::write(landed.join("d2"), b"in the way").unwrap();
    env.ok(&[
        "restore",
        "latest",
        "--target",
        t.to_str().unwrap(),
        "--overwrite",
        "always",
    ]);
    assert_eq!(contents(&src), contents(&landed));
}

#[test]
fn a_target_that_is_a_file_is_refused_clearly() {
    let (env, _src, _) = backed_up_tree();
    let t = env.path("plain-file");
    fs::write(&t, b"not a directory").unwrap();
    let out = env.run(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("exists and is not a directory"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read(&t).unwrap(), b"not a directory");
}
