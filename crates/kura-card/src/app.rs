//! The applications on a card: where each lives in memory, what kind it is, and whether a
//! restore has touched it since (card.md requirement 8).

/// What an application holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Plain data, read and written with READ BINARY and UPDATE BINARY.
    Data,
    /// A value (electronic money, points): a 64-bit count in its first eight bytes, changed
    /// only through the value commands.
    Value {
        /// What a restore does to the value.
        reset: Reset,
        /// The fixed value it starts at and is reset to.
        initial: u64,
    },
}

/// How a value application undoes a restore, so restored money can never be spent twice
/// (card.md requirement 8 names all three).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// The application resets its value at its next value command, then carries it out.
    OnUse,
    /// The application refuses value commands with status 6300 until the host sets the
    /// value again (SET VALUE).
    Report,
    /// The card's operating system resets the value when the restore completes.
    AtRestore,
}

impl Reset {
    /// The name used in status listings and the card's settings.
    pub fn name(self) -> &'static str {
        match self {
            Reset::OnUse => "on-use",
            Reset::Report => "report",
            Reset::AtRestore => "at-restore",
        }
    }

    /// The reset a name means.
    pub fn from_name(name: &str) -> Option<Reset> {
        [Reset::OnUse, Reset::Report, Reset::AtRestore]
            .into_iter()
            .find(|r| r.name() == name)
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Reset::OnUse => 0,
            Reset::Report => 1,
            Reset::AtRestore => 2,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Reset> {
        [Reset::OnUse, Reset::Report, Reset::AtRestore]
            .into_iter()
            .find(|r| r.code() == c)
    }
}

/// One application: its name and AID, its kind, its pages, and its restored flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    /// A short name (`purse`, `points`, `data`).
    pub name: String,
    /// The AID that SELECT names it by.
    pub aid: Vec<u8>,
    /// What it holds.
    pub kind: Kind,
    /// Its first page.
    pub first_page: u16,
    /// How many pages it has.
    pub pages: u16,
    /// Set by a restore that wrote one of its pages; cleared by its reset.
    pub restored: bool,
}

impl Application {
    /// Whether page `page` belongs to this application.
    pub fn holds(&self, page: u16) -> bool {
        page >= self.first_page && page - self.first_page < self.pages
    }

    /// The application's first byte and length in memory.
    pub fn range(&self, page_size: usize) -> (usize, usize) {
        (
            usize::from(self.first_page) * page_size,
            usize::from(self.pages) * page_size,
        )
    }
}

/// The AID prefix of Kura's card applications (a proprietary RID, `F0` then "KURA").
pub const AID_PREFIX: [u8; 5] = [0xF0, 0x4B, 0x55, 0x52, 0x41];

/// The AID of the card manager, which answers the card-wide commands.
pub const MANAGER_AID: [u8; 6] = [0xF0, 0x4B, 0x55, 0x52, 0x41, 0x00];

/// The applications a new card carries: an e-money purse (page 0, reset at next use), a points
/// application (page 1, reset reported to the host), and plain data over the other pages.
pub fn default_layout(pages: u16) -> Vec<Application> {
    let aid = |n: u8| {
        let mut a = AID_PREFIX.to_vec();
        a.push(n);
        a
    };
    vec![
        Application {
            name: "purse".into(),
            aid: aid(1),
            kind: Kind::Value {
                reset: Reset::OnUse,
                initial: 0,
            },
            first_page: 0,
            pages: 1,
            restored: false,
        },
        Application {
            name: "points".into(),
            aid: aid(2),
            kind: Kind::Value {
                reset: Reset::Report,
                initial: 0,
            },
            first_page: 1,
            pages: 1,
            restored: false,
        },
        Application {
            name: "data".into(),
            aid: aid(3),
            kind: Kind::Data,
            first_page: 2,
            pages: pages.saturating_sub(2),
            restored: false,
        },
    ]
}
