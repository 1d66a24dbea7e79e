//! Extended attributes of a path (never following a symlink), read for backup and written
//! back on restore.

use std::ffi::CString;
use std::io;
use std::path::Path;

use kura_core::tree::Xattr;

/// Calls `fill(buf, len)` (a size query when `len` is 0) until the buffer is big enough for
/// what it returns: the kernel's answer can grow between the query and the read.
fn sized(fill: impl Fn(*mut libc::c_char, usize) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let want = fill(std::ptr::null_mut(), 0);
        if want < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; want as usize];
        let got = fill(buf.as_mut_ptr().cast(), buf.len());
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
}

/// The extended attributes of `path`, sorted by name; none where the filesystem has none.
pub fn read(path: &Path) -> io::Result<Vec<Xattr>> {
    let p = crate::sys::c_path(path)?;
    // SAFETY: `p` is a valid C string and `buf` points to `len` writable bytes (or is null with 0).
    let names = match sized(|buf, len| unsafe { libc::llistxattr(p.as_ptr(), buf, len) }) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let n = CString::new(name).map_err(io::Error::other)?;
        // SAFETY: as above; `n` is a valid C string.
        match sized(|buf, len| unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.cast(), len) })
        {
            Ok(value) => out.push(Xattr {
                name: name.to_vec(),
                value,
            }),
            // Removed since it was listed.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Sets each attribute on `path`; the names of those that could not be set, with the reason.
pub fn write(path: &Path, xattrs: &[Xattr]) -> Vec<String> {
    let Ok(p) = crate::sys::c_path(path) else {
        return vec!["path contains NUL".into()];
    };
    let mut failed = Vec::new();
    for x in xattrs {
        let Ok(n) = CString::new(x.name.clone()) else {
            continue;
        };
        // SAFETY: valid C strings, and `value` is a live slice of the given length.
        let rc = unsafe {
            libc::lsetxattr(
                p.as_ptr(),
                n.as_ptr(),
                x.value.as_ptr().cast(),
                x.value.len(),
                0,
            )
        };
        if rc != 0 {
            failed.push(format!(
                "extended attribute {}: {}",
                String::from_utf8_lossy(&x.name),
                io::Error::last_os_error()
            ));
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_attributes_round_trip_where_the_filesystem_has_them() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let want = vec![Xattr {
            name: b"user.kura.test".to_vec(),
            value: b"value\0with nul".to_vec(),
        }];
        if !write(&f, &want).is_empty() {
            // This filesystem takes no user attributes; nothing more to check here.
            return;
        }
        assert_eq!(read(&f).unwrap(), want);
    }
}
