//! A value record (docs/requirements/value-vault.md, Data) and its digest: the fields a wallet
//! can list without opening the value.

use serde::{Deserialize, Serialize};

use crate::WalletError;
use crate::wire::{Reader, Writer};

/// When a value may be used; `None` in a record means always.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    /// First day it may be used (inclusive).
    pub from: jiff::civil::Date,
    /// Last day it may be used (inclusive).
    pub until: jiff::civil::Date,
}

/// One piece of electronic value: a ticket, a prepaid card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueRecord {
    /// What kind of value: `movie-ticket`, `concert-ticket`, `prepaid`, ...
    pub kind: String,
    /// Its name (the film, the concert, the card).
    pub name: String,
    /// Price of one, in the smallest unit of its currency.
    pub unit_price: u64,
    /// How many.
    pub quantity: u64,
    /// Price of all of them.
    pub total: u64,
    /// Where it is used.
    pub place: String,
    /// When it may be used.
    pub validity: Option<Validity>,
    /// What is left to spend (prepaid value).
    pub balance: u64,
    /// Anything else.
    pub remarks: String,
}

impl ValueRecord {
    /// The record's bytes (what is sealed, and what counts against a wallet's capacity).
    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of strings, numbers and dates always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a record's bytes.
    pub fn from_bytes(b: &[u8]) -> Result<ValueRecord, WalletError> {
        serde_json::from_slice(b).map_err(|_| WalletError::Malformed("value record"))
    }
}

/// A field a digest may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Field {
    /// `kind`.
    Kind,
    /// `name`.
    Name,
    /// `unit_price`.
    UnitPrice,
    /// `quantity`.
    Quantity,
    /// `total`.
    Total,
    /// `place`.
    Place,
    /// `validity`.
    Validity,
    /// `balance`.
    Balance,
    /// `remarks`.
    Remarks,
}

impl Field {
    const ALL: [Field; 9] = [
        Field::Kind,
        Field::Name,
        Field::UnitPrice,
        Field::Quantity,
        Field::Total,
        Field::Place,
        Field::Validity,
        Field::Balance,
        Field::Remarks,
    ];

    /// The field's name in digests and configuration.
    pub fn name(self) -> &'static str {
        match self {
            Field::Kind => "kind",
            Field::Name => "name",
            Field::UnitPrice => "unit-price",
            Field::Quantity => "quantity",
            Field::Total => "total",
            Field::Place => "place",
            Field::Validity => "validity",
            Field::Balance => "balance",
            Field::Remarks => "remarks",
        }
    }

    /// The field a name means.
    pub fn from_name(n: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == n)
    }

    fn of(self, r: &ValueRecord) -> String {
        match self {
            Field::Kind => r.kind.clone(),
            Field::Name => r.name.clone(),
            Field::UnitPrice => r.unit_price.to_string(),
            Field::Quantity => r.quantity.to_string(),
            Field::Total => r.total.to_string(),
            Field::Place => r.place.clone(),
            Field::Validity => r
                .validity
                .as_ref()
                .map_or(String::new(), |v| format!("{}/{}", v.from, v.until)),
            Field::Balance => r.balance.to_string(),
            Field::Remarks => r.remarks.clone(),
        }
    }
}

/// The fields a digest carries by default: kind, name, quantity, validity, place.
pub const DEFAULT_DIGEST: [Field; 5] = [
    Field::Kind,
    Field::Name,
    Field::Quantity,
    Field::Validity,
    Field::Place,
];

/// The fields of a record chosen to be shown without opening it (possibly none), in the
/// order chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest(pub Vec<(String, String)>);

impl Digest {
    /// The digest of `r` over `fields`.
    pub fn of(r: &ValueRecord, fields: &[Field]) -> Digest {
        Digest(
            fields
                .iter()
                .map(|f| (f.name().to_string(), f.of(r)))
                .collect(),
        )
    }

    /// A field's value, if the digest carries it.
    pub fn get(&self, field: Field) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == field.name())
            .map(|(_, v)| v.as_str())
    }

    /// The validity's last day, if the digest carries a validity.
    pub fn until(&self) -> Option<jiff::civil::Date> {
        self.get(Field::Validity)?.split_once('/')?.1.parse().ok()
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u64(self.0.len() as u64);
        for (n, v) in &self.0 {
            w.bytes(n.as_bytes()).bytes(v.as_bytes());
        }
    }

    pub(crate) fn read(r: &mut Reader) -> Result<Digest, WalletError> {
        let n = r.u64()?;
        let mut fields = Vec::new();
        for _ in 0..n {
            let name = std::str::from_utf8(r.bytes()?)
                .map_err(|_| WalletError::Malformed("digest field name"))?;
            if Field::from_name(name).is_none() {
                return Err(WalletError::Malformed("digest field name"));
            }
            let value = std::str::from_utf8(r.bytes()?)
                .map_err(|_| WalletError::Malformed("digest field value"))?;
            fields.push((name.to_string(), value.to_string()));
        }
        Ok(Digest(fields))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn ticket() -> ValueRecord {
        ValueRecord {
            kind: "concert-ticket".into(),
            name: "Winter Gala".into(),
            unit_price: 6500,
            quantity: 2,
            total: 13000,
            place: "Hall 3".into(),
            validity: Some(Validity {
                from: jiff::civil::date(2026, 12, 20),
                until: jiff::civil::date(2026, 12, 24),
            }),
            balance: 0,
            remarks: "row F".into(),
        }
    }

    #[test]
    fn a_digest_carries_the_chosen_fields_and_reads_back() {
        let d = Digest::of(&ticket(), &DEFAULT_DIGEST);
        assert_eq!(d.get(Field::Name), Some("Winter Gala"));
        assert_eq!(d.get(Field::Remarks), None);
        assert_eq!(d.until(), Some(jiff::civil::date(2026, 12, 24)));
        let mut w = Writer::default();
        d.write(&mut w);
        let mut r = Reader::new(&w.0, "digest");
        assert_eq!(Digest::read(&mut r).unwrap(), d);
        assert_eq!(
            Digest::of(&ticket(), &[]).0.len(),
            0,
            "a digest may be empty"
        );
        let rec = ticket();
        assert_eq!(ValueRecord::from_bytes(&rec.to_bytes()).unwrap(), rec);
    }
}
