//! One module per command or command group. Each takes the shared [`crate::ctx::Ctx`] and
//! its own options, calls the libraries, and prints through [`crate::output::Output`].

pub mod admin;
pub mod backup;
pub mod billing;
pub mod card;
pub mod cert;
pub mod check;
pub mod conditions;
pub mod contents;
pub mod copy;
pub mod device;
pub mod forget;
pub mod init;
pub mod jobs;
pub mod key;
pub mod keyman;
pub mod mail;
pub mod mount;
pub mod phone;
pub mod repair;
pub mod restore;
pub mod schedule;
pub mod serve;
pub mod shell;
pub mod snapshots;
pub mod tag;
pub mod unlock;
pub mod vault;
pub mod wallet;
