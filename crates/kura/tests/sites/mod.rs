//! Storage sites (`kura-sites`) against real storage: a local directory and buckets of a real
//! S3-compatible server (Garage, started here on loopback; `.ci/run` installs it).

use std::path::Path;
use std::sync::Arc;

use kura_placement::envelope::Keyring;
use kura_sites::{Site, SiteConfig, SiteError};

use crate::fixture::garage::runtime;
use crate::fixture::*;

fn file_site(dir: &Path, id: &str, region: &str, secret: &str) -> SiteConfig {
    SiteConfig {
        id: id.into(),
        region: region.into(),
        url: format!("file://{}", dir.display()),
        access_key_id: None,
        secret_access_key: None,
        secret: secret.into(),
        risk: 0.0,
    }
}

/// Runs `check` on each of three initialized, authenticated sites: a directory and two buckets
/// of a Garage.
fn on_each_kind_of_site(check: impl AsyncFn(&Site, &Keyring)) {
    let g = Garage::start();
    let disk = tempfile::tempdir().unwrap();
    let configs = [
        file_site(disk.path(), "site-a", "kanto", "secret a"),
        g.site("site-b", "kansai", "site-b", "secret b"),
        g.site("site-c", "hokkaido", "site-c", "secret c"),
    ];
    runtime().block_on(async {
        let mut keyring = Keyring::default();
        for c in configs {
            let site = Site::open(c).unwrap();
            site.initialize().await.unwrap();
            site.authenticate().await.unwrap();
            keyring.current(site.id());
            check(&site, &keyring).await;
        }
    });
}

#[test]
fn a_copy_round_trips_at_a_directory_or_a_bucket() {
    on_each_kind_of_site(async |site, keyring| {
        let object: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let copy = site
            .put(
                (1, &keyring.latest(site.id()).unwrap().1),
                "data/ab/abcd",
                Arc::new(object.clone()),
            )
            .await
            .unwrap();
        assert_eq!(copy.site, site.id());
        assert_eq!(copy.region, site.region());
        assert_eq!(copy.algorithm, "XChaCha20-Poly1305");
        assert_eq!(copy.key_ref, format!("{}/v1", site.id()));
        assert_eq!(site.get(keyring, "data/ab/abcd").await.unwrap(), object);
        // The site holds only the sealed copy.
        site.delete("data/ab/abcd").await.unwrap();
        site.delete("data/ab/abcd").await.unwrap();
        assert!(matches!(
            site.get(keyring, "data/ab/abcd").await,
            Err(SiteError::NotFound { .. })
        ));
    });
}

#[test]
fn a_part_comes_from_the_segments_that_hold_it() {
    on_each_kind_of_site(async |site, keyring| {
        // Longer than two parts: a bucket takes it as a multipart upload.
        let big: Vec<u8> = (0..13_000_000u32).map(|i| (i % 253) as u8).collect();
        site.put(
            (1, &keyring.latest(site.id()).unwrap().1),
            "data/cd",
            Arc::new(big.clone()),
        )
        .await
        .unwrap();
        for (a, b) in [
            (0, 10),
            (1_048_000, 1_049_000),
            (6_291_000, 6_292_000),
            (12_900_000, 13_000_000),
        ] {
            let part = site
                .get_range(keyring, "data/cd", big.len() as u64, a, b)
                .await
                .unwrap();
            assert_eq!(part, &big[a as usize..b as usize], "{a}..{b}");
        }
        site.delete("data/cd").await.unwrap();
    });
}

#[test]
fn a_site_with_the_wrong_identity_is_not_written() {
    let g = Garage::start();
    runtime().block_on(async {
        let b = Site::open(g.site("site-b", "kansai", "site-b", "secret b")).unwrap();
        b.initialize().await.unwrap();
        // Another site configured onto site-b's bucket: it answers with site-b's marker.
        let impostor = Site::open(g.existing("site-d", "kyushu", "site-b", "secret d")).unwrap();
        let e = impostor.authenticate().await.unwrap_err().to_string();
        assert!(e.contains("says it is \"site-b\""), "{e}");
        // The right name with the wrong secret.
        let forged = Site::open(g.existing("site-b", "kansai", "site-b", "not it")).unwrap();
        let e = forged.authenticate().await.unwrap_err().to_string();
        assert!(e.contains("not made with its secret"), "{e}");
        // A new bucket has no marker until it is initialized.
        let fresh = Site::open(g.site("site-e", "tohoku", "site-e", "secret e")).unwrap();
        let e = fresh.authenticate().await.unwrap_err().to_string();
        assert!(e.contains("no marker"), "{e}");
    });
}

/// A directory site with one copy, `index/01`, written under its first key, and `index/02`
/// under its second.
fn two_keys(disk: &Path) -> (Site, Keyring) {
    let rt = runtime();
    rt.block_on(async {
        let site = Site::open(file_site(disk, "site-a", "kanto", "s")).unwrap();
        site.initialize().await.unwrap();
        let mut keyring = Keyring::default();
        let (v, key) = keyring.current("site-a");
        site.put((v, &key), "index/01", Arc::new(b"first".to_vec()))
            .await
            .unwrap();
        keyring.rotate("site-a");
        let (v, key) = keyring.current("site-a");
        let copy = site
            .put((v, &key), "index/02", Arc::new(b"second".to_vec()))
            .await
            .unwrap();
        assert_eq!(copy.key_ref, "site-a/v2");
        (site, keyring)
    })
}

#[test]
fn copies_sealed_under_an_old_key_still_open() {
    let disk = tempfile::tempdir().unwrap();
    let (site, keyring) = two_keys(disk.path());
    runtime().block_on(async {
        assert_eq!(site.get(&keyring, "index/01").await.unwrap(), b"first");
        assert_eq!(site.get(&keyring, "index/02").await.unwrap(), b"second");
    });
}

#[test]
fn a_damaged_copy_is_found_whole_or_in_part() {
    let disk = tempfile::tempdir().unwrap();
    let (site, keyring) = two_keys(disk.path());
    let stored = disk.path().join("index/02");
    let mut bytes = std::fs::read(&stored).unwrap();
    assert!(
        !bytes.windows(6).any(|w| w == b"second"),
        "sealed at the site"
    );
    bytes[12] ^= 1;
    std::fs::write(&stored, &bytes).unwrap();
    runtime().block_on(async {
        let e = site.get(&keyring, "index/02").await.unwrap_err();
        assert!(matches!(e, SiteError::Damaged { .. }), "{e}");
        let e = site
            .get_range(&keyring, "index/02", 6, 1, 3)
            .await
            .unwrap_err();
        assert!(matches!(e, SiteError::Damaged { .. }), "{e}");
    });
}

#[test]
fn a_copy_with_another_segment_size_is_read_where_its_header_says() {
    let disk = tempfile::tempdir().unwrap();
    let (site, keyring) = two_keys(disk.path());
    let (v, key) = keyring.latest("site-a").unwrap();
    let other: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    let sealed =
        kura_placement::envelope::seal_in_segments(&key, v, "site-a", "data/old", &other, 1 << 20);
    std::fs::create_dir_all(disk.path().join("data")).unwrap();
    std::fs::write(disk.path().join("data/old"), sealed).unwrap();
    let part = runtime().block_on(async {
        site.get_range(
            &keyring,
            "data/old",
            other.len() as u64,
            1_000_000,
            2_500_000,
        )
        .await
        .unwrap()
    });
    assert_eq!(part, &other[1_000_000..2_500_000]);
}

#[test]
fn a_truncated_copy_is_damaged_not_a_site_that_is_down() {
    // Whole or in part.
    let disk = tempfile::tempdir().unwrap();
    let (site, keyring) = two_keys(disk.path());
    let (v, key) = keyring.latest("site-a").unwrap();
    runtime().block_on(async {
        let big = vec![7u8; 2_500_000];
        site.put((v, &key), "data/ef", Arc::new(big.clone()))
            .await
            .unwrap();
        let stored = disk.path().join("data/ef");
        let bytes = std::fs::read(&stored).unwrap();
        std::fs::write(&stored, &bytes[..1_500_000]).unwrap();
        let e = site
            .get_range(&keyring, "data/ef", big.len() as u64, 2_000_000, 2_100_000)
            .await
            .unwrap_err();
        assert!(matches!(e, SiteError::Damaged { .. }), "{e}");
        assert!(matches!(
            site.get(&keyring, "data/ef").await.unwrap_err(),
            SiteError::Damaged { .. }
        ));
    });
}

#[test]
fn a_site_is_a_directory_or_a_bucket() {
    let disk = tempfile::tempdir().unwrap();
    assert!(Site::open(file_site(disk.path(), "x", "r", "s")).is_ok());
    let bad = SiteConfig {
        url: "ftp://nowhere".into(),
        ..file_site(disk.path(), "y", "r", "s")
    };
    assert!(
        Site::open(bad)
            .unwrap_err()
            .to_string()
            .contains("expected file://")
    );
}
