//! The provider side of Kura (`spec/terminal-backup.md` requirements 1-4): users and their
//! contracts in SQLite, authentication before anything else, and an HTTPS API that stores each
//! user's encrypted repository as opaque files. The service never holds a key that decrypts them.

pub mod server;
pub mod sites;
pub mod store;
pub mod tls;
pub mod upload;
