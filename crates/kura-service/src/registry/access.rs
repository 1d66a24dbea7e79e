//! The operator's hold on who may do what: changing a leaked password, ending sessions,
//! append-only users, and removing a user.
//!
//! An append-only user's devices log in with their password or certificate and may only add:
//! the service refuses to delete or replace their objects, so ransomware on a device cannot
//! destroy its backups. `forget` and `prune` then log in with the user's separate maintenance
//! password, kept off the devices, whose sessions may delete.

use rusqlite::params;

use super::{Registry, RegistryError, Result, hash_password, lock};

/// Passwords shorter than this are refused.
const MIN_PASSWORD: usize = 8;

fn check_length(password: &[u8]) -> Result<()> {
    if password.len() < MIN_PASSWORD {
        return Err(RegistryError::Invalid(format!(
            "the password must have at least {MIN_PASSWORD} characters"
        )));
    }
    Ok(())
}

impl Registry {
    /// Replaces a user's password; their sessions end, so a leaked password stops working at
    /// once.
    pub fn set_password(&self, name: &str, password: &[u8]) -> Result<()> {
        check_length(password)?;
        let hash = hash_password(password)?;
        let id = self.live_user(name)?;
        lock(&self.db).execute(
            "UPDATE users SET password = ?1 WHERE id = ?2",
            params![hash, id],
        )?;
        self.end_sessions(name)?;
        Ok(())
    }

    /// Sets (or with `None` withdraws) the user's maintenance password, whose sessions may
    /// delete even when the user is append-only; their sessions end.
    pub fn set_maintenance_password(&self, name: &str, password: Option<&[u8]>) -> Result<()> {
        let hash = match password {
            Some(p) => {
                check_length(p)?;
                Some(hash_password(p)?)
            }
            None => None,
        };
        let id = self.live_user(name)?;
        lock(&self.db).execute(
            "UPDATE users SET maintenance = ?1 WHERE id = ?2",
            params![hash, id],
        )?;
        self.end_sessions(name)?;
        Ok(())
    }

    /// Whether a user has a maintenance password.
    pub fn has_maintenance_password(&self, name: &str) -> Result<bool> {
        let id = self.user_id(name)?;
        Ok(lock(&self.db).query_row(
            "SELECT maintenance IS NOT NULL FROM users WHERE id = ?1",
            [id],
            |r| r.get(0),
        )?)
    }

    /// Makes a user append-only or not; their sessions end, so the change holds at once.
    pub fn set_append_only(&self, name: &str, on: bool) -> Result<()> {
        let id = self.live_user(name)?;
        lock(&self.db).execute(
            "UPDATE users SET append_only = ?1 WHERE id = ?2",
            params![on, id],
        )?;
        self.end_sessions(name)?;
        Ok(())
    }

    /// Ends every session of a user; how many there were.
    pub fn end_sessions(&self, name: &str) -> Result<usize> {
        let id = self.user_id(name)?;
        Ok(lock(&self.db).execute("DELETE FROM sessions WHERE user_id = ?1", [id])?)
    }

    /// Removes a user whose objects are gone (the caller deletes them from the sites first):
    /// no credential, session or contract is left, and no one can log in as them. The row
    /// stays, so their statements and ledger keep their name, and the name is not given again.
    pub fn remove_user(&self, name: &str) -> Result<()> {
        let id = self.live_user(name)?;
        let mut db = lock(&self.db);
        let tx = db.transaction()?;
        let objects: i64 = tx.query_row(
            "SELECT COUNT(*) FROM objects WHERE user_id = ?1",
            [id],
            |r| r.get(0),
        )?;
        if objects > 0 {
            return Err(RegistryError::Conflict(format!(
                "{name} still has {objects} objects stored; delete them first"
            )));
        }
        for table in ["sessions", "certs", "contracts", "reservations"] {
            tx.execute(&format!("DELETE FROM {table} WHERE user_id = ?1"), [id])?;
        }
        tx.execute(
            "UPDATE users SET password = '!', maintenance = NULL, append_only = 0, bytes = 0,
                 objects = 0, removed = ?1 WHERE id = ?2",
            params![jiff::Timestamp::now().to_string(), id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The id of a user who has not been removed.
    fn live_user(&self, name: &str) -> Result<i64> {
        let id = self.user_id(name)?;
        let removed: Option<String> =
            lock(&self.db).query_row("SELECT removed FROM users WHERE id = ?1", [id], |r| {
                r.get(0)
            })?;
        match removed {
            Some(when) => Err(RegistryError::Conflict(format!(
                "{name} was removed at {when}"
            ))),
            None => Ok(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::registry::Grant;

    #[test]
    fn a_new_password_works_at_once_and_ends_the_old_sessions() {
        let (_dir, r, ann) = crate::registry::scratch();
        let grant = r
            .check_password("ann", b"a long password")
            .unwrap()
            .unwrap();
        let (_, token) = r
            .open_session(grant, jiff::SignedDuration::from_mins(5))
            .unwrap();
        r.set_password("ann", b"a new password").unwrap();
        assert!(r.session(&token).unwrap().is_none());
        assert!(
            r.check_password("ann", b"a long password")
                .unwrap()
                .is_none()
        );
        assert_eq!(
            r.check_password("ann", b"a new password").unwrap(),
            Some(Grant {
                user: ann,
                append_only: false
            })
        );
        assert!(r.set_password("ann", b"short").is_err());
    }

    #[test]
    fn only_the_maintenance_password_escapes_append_only() {
        let (_dir, r, ann) = crate::registry::scratch();
        r.set_append_only("ann", true).unwrap();
        r.set_maintenance_password("ann", Some(b"kept offline"))
            .unwrap();
        let device = r
            .check_password("ann", b"a long password")
            .unwrap()
            .unwrap();
        assert!(device.append_only);
        let maintenance = r.check_password("ann", b"kept offline").unwrap().unwrap();
        assert_eq!(
            maintenance,
            Grant {
                user: ann,
                append_only: false
            }
        );
        let (_, token) = r
            .open_session(device, jiff::SignedDuration::from_mins(5))
            .unwrap();
        assert!(r.session(&token).unwrap().unwrap().1.append_only);
        assert_eq!(r.end_sessions("ann").unwrap(), 1);
    }

    #[test]
    fn a_removed_user_cannot_log_in_and_keeps_the_name() {
        let (_dir, r, ann) = crate::registry::scratch();
        r.record_object(ann, "data", "aa", 10, "s", None, &[])
            .unwrap();
        assert!(r.remove_user("ann").is_err(), "objects are still stored");
        r.remove_object(ann, "data", "aa").unwrap();
        r.remove_user("ann").unwrap();
        assert!(
            r.check_password("ann", b"a long password")
                .unwrap()
                .is_none()
        );
        assert!(r.user("ann").unwrap().removed.is_some());
        assert!(r.add_user("ann", b"a long password").is_err());
        assert!(r.set_password("ann", b"another one").is_err());
    }
}
