//! Exclude and include patterns follow restic's rules, and a pattern that matches nothing is
//! said, not silently ignored.

use std::fs;
use std::path::Path;

use crate::fixture::*;

/// A tree with a `py/test` directory, a temporary file and files at several depths.
fn project(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    for p in [
        "py/test/t1.py",
        "py/test/deep/t2.py",
        "py/lib/a.py",
        "notes/x.tmp",
        "notes/keep.txt",
        "top.txt",
    ] {
        let f = src.join(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(&f, p.as_bytes()).unwrap();
    }
    src
}

fn listed_files(env: &Env, src: &Path) -> Vec<String> {
    let mut v: Vec<String> = env
        .json(&["ls", "latest"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "file")
        .map(|e| {
            Path::new(e["path"].as_str().unwrap())
                .strip_prefix(src)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn excludes_match_names_and_relative_paths_at_any_depth() {
    let env = Env::new();
    env.init();
    let src = project(&env);
    let out = env
        .cmd(&[
            "backup",
            src.to_str().unwrap(),
            "--exclude",
            "py/test",
            "--exclude",
            "*.tmp",
            "--exclude",
            "*.tpm",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        listed_files(&env, &src),
        ["notes/keep.txt", "py/lib/a.py", "top.txt"]
    );
    let err = stderr(&out);
    assert!(
        err.contains("warning: exclude pattern \"*.tpm\" matched nothing"),
        "{err}"
    );
    assert!(!err.contains("\"*.tmp\" matched nothing"), "{err}");
}

#[test]
fn an_anchored_exclude_matches_only_from_the_root() {
    let env = Env::new();
    env.init();
    let src = project(&env);
    let anchored = format!("{}/py", src.display());
    env.backup(&[
        src.to_str().unwrap(),
        "--exclude",
        &anchored,
        "--exclude",
        "/py",
    ]);
    assert_eq!(
        listed_files(&env, &src),
        ["notes/keep.txt", "notes/x.tmp", "top.txt"]
    );
}

#[test]
fn an_include_by_name_restores_it_at_any_depth() {
    let env = Env::new();
    env.init();
    let src = project(&env);
    env.backup(&[src.to_str().unwrap()]);
    let t = env.path("t");
    let out = env
        .cmd(&[
            "restore",
            "latest",
            "--target",
            t.to_str().unwrap(),
            "--include",
            "test",
            "--include",
            "nothing-like-it",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("include pattern \"nothing-like-it\" matched nothing"));
    let got: Vec<_> = files_under(&t)
        .iter()
        .map(|f| {
            f.strip_prefix(restored(&t, &src))
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(got, ["py/test/deep/t2.py", "py/test/t1.py"]);
}

#[test]
fn an_include_that_matches_nothing_is_an_error() {
    let env = Env::new();
    env.init();
    let src = project(&env);
    env.backup(&[src.to_str().unwrap()]);
    let t = env.path("t");
    let out = env.run(&[
        "restore",
        "latest",
        "--target",
        t.to_str().unwrap(),
        "--include",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("nothing in the snapshot matches --include nope"),
        "{}",
        stderr(&out)
    );
}
