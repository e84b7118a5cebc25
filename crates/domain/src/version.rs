//! Schema versions of the events: the version rule of docs/DESIGN.md §3, in one place.
//!
//! A version is `MAJOR.MINOR` per event type: a minor version only adds optional fields, anything
//! else is a new major. It travels in one AMQP header, [`SCHEMA_VERSION_HEADER`]; a message
//! without it is version 1.0 (the lab's scripts and the classic lab send none). A writer writes
//! the lowest version that can carry the message: 1.0 for an order of one line (the lab's flat
//! body), 2.0 for several (`lines`), see [`SchemaVersion::for_lines`]. A reader knows the majors it reads; any minor of those is read, and an unknown
//! major is poison on its first delivery ([`check_readable`]), before the body is parsed, so a
//! version-1 parser never reports a misleading field error about a version-2 body. Each major of
//! each event has its JSON Schema in docs/schemas/ ([`EventType::schema_path`]), held to the
//! bodies of [`crate::wire`] by crates/domain/tests/schemas.rs.

use std::fmt;

use crate::events::EventType;
use crate::wire::Malformed;

/// The AMQP header that carries an event's schema version (a long string, `"1.0"`).
pub const SCHEMA_VERSION_HEADER: &str = "x-schema-version";

/// An event's schema version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaVersion {
    pub major: u16,
    pub minor: u16,
}

impl SchemaVersion {
    /// What a message without a version is: the lab's flat bodies.
    pub const V1: Self = Self { major: 1, minor: 0 };
    /// Orders of several lines and the outcomes about them (`lines` instead of `item`, `qty`).
    pub const V2: Self = Self { major: 2, minor: 0 };

    /// The version an order event about `lines` lines is written in: 1 (the lab's flat body)
    /// for one line or none, 2 for several.
    pub const fn for_lines(lines: usize) -> Self {
        if lines > 1 { Self::V2 } else { Self::V1 }
    }

    /// Read `MAJOR.MINOR` (digits only, each at most 65535).
    ///
    /// # Errors
    /// Anything else, with a reason that quotes it (cut to a line).
    pub fn parse(text: &str) -> Result<Self, Malformed> {
        let number = |part: &str| {
            (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u16>().ok())
                .flatten()
        };
        let parsed = text
            .split_once('.')
            .and_then(|(major, minor)| Some((number(major)?, number(minor)?)));
        match parsed {
            Some((major, minor)) => Ok(Self { major, minor }),
            None => Err(Malformed(format!(
                "{SCHEMA_VERSION_HEADER} {:?} is not a version (MAJOR.MINOR, e.g. \"1.0\")",
                text.chars().take(40).collect::<String>()
            ))),
        }
    }

    /// The version a message's header states; none stated is [`Self::V1`].
    ///
    /// # Errors
    /// The header is there but is not a version.
    pub fn of_header(value: Option<&str>) -> Result<Self, Malformed> {
        value.map_or(Ok(Self::V1), Self::parse)
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl EventType {
    /// The majors of this event that exist (each has its schema in docs/schemas/): version 2
    /// of the events that carry an order's lines.
    pub const fn majors(self) -> &'static [u16] {
        match self {
            Self::OrderPlaced
            | Self::InventoryReserved
            | Self::InventoryFailed
            | Self::InventoryReleased => &[1, 2],
            Self::OrderCancelled
            | Self::OrderStatusUpdated
            | Self::ProductSnapshot
            | Self::ProductPriceChanged
            | Self::ProductStockUpdated
            | Self::ProductStockLow
            | Self::ProductStockOut => &[1],
        }
    }

    /// The lowest version our services write of this event (an order of one line); a message
    /// about several lines says its own (`OrderPlaced::schema_version`).
    pub const fn schema_version(self) -> SchemaVersion {
        match self {
            Self::OrderPlaced
            | Self::OrderCancelled
            | Self::InventoryReserved
            | Self::InventoryFailed
            | Self::InventoryReleased
            | Self::OrderStatusUpdated
            | Self::ProductSnapshot
            | Self::ProductPriceChanged
            | Self::ProductStockUpdated
            | Self::ProductStockLow
            | Self::ProductStockOut => SchemaVersion::V1,
        }
    }
}

impl EventType {
    /// Where the JSON Schema of major `major` of this event's body lives, relative to docs/
    /// (`schemas/order.placed.v1.json`): the files the AsyncAPI document refers to, the value a
    /// CloudEvents `dataschema` names, and what the contract tests check every body against.
    pub fn schema_path(self, major: u16) -> String {
        format!("schemas/{}.v{major}.json", self.routing_key())
    }
}

/// Whether `reader`, which reads majors `reads` of `event`, can read `version`.
///
/// # Errors
/// An unknown major, with the reason the DLQ shows: `OrderPlaced version 2.0 is not read by
/// inventory-svc; it reads 1`.
pub fn check_readable(
    event: EventType,
    version: SchemaVersion,
    reads: &[u16],
    reader: &str,
) -> Result<(), Malformed> {
    if reads.contains(&version.major) {
        return Ok(());
    }
    let majors: Vec<String> = reads.iter().map(u16::to_string).collect();
    Err(Malformed(format!(
        "{} version {version} is not read by {reader}; it reads {}",
        event.name(),
        if majors.is_empty() {
            "none".to_owned()
        } else {
            majors.join(", ")
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_major_dot_minor() {
        assert_eq!(
            SchemaVersion::parse("2.0"),
            Ok(SchemaVersion { major: 2, minor: 0 })
        );
        assert_eq!(
            SchemaVersion::parse("1.12"),
            Ok(SchemaVersion {
                major: 1,
                minor: 12
            })
        );
        for bad in [
            "", "2", "2.", ".1", "v2.0", "2.0.1", "-1.0", "1.x", " 1.0", "99999.0",
        ] {
            let err = SchemaVersion::parse(bad).expect_err(bad);
            assert!(err.0.contains("is not a version"), "{bad}: {err}");
        }
        assert_eq!(SchemaVersion::of_header(None), Ok(SchemaVersion::V1));
        assert_eq!(SchemaVersion { major: 2, minor: 3 }.to_string(), "2.3");
    }

    #[test]
    fn a_schema_path_names_the_routing_key_and_the_major() {
        assert_eq!(
            EventType::OrderPlaced.schema_path(1),
            "schemas/order.placed.v1.json"
        );
        assert_eq!(
            EventType::OrderStatusUpdated.schema_path(2),
            "schemas/order.status.updated.v2.json"
        );
    }

    #[test]
    fn every_event_is_written_as_version_1() {
        for event in EventType::ALL {
            assert_eq!(event.schema_version(), SchemaVersion::V1, "{event:?}");
        }
    }

    #[test]
    fn a_known_major_is_read_at_any_minor_and_an_unknown_one_is_refused_by_name() {
        let v = |major, minor| SchemaVersion { major, minor };
        assert!(check_readable(EventType::OrderPlaced, v(1, 0), &[1], "inventory-svc").is_ok());
        assert!(check_readable(EventType::OrderPlaced, v(1, 7), &[1], "inventory-svc").is_ok());
        assert!(check_readable(EventType::OrderPlaced, v(2, 0), &[1, 2], "x").is_ok());
        assert_eq!(
            check_readable(EventType::OrderPlaced, v(2, 0), &[1], "inventory-svc"),
            Err(Malformed(
                "OrderPlaced version 2.0 is not read by inventory-svc; it reads 1".into()
            ))
        );
        assert_eq!(
            check_readable(EventType::InventoryReserved, v(3, 1), &[1, 2], "order-svc")
                .unwrap_err()
                .0,
            "InventoryReserved version 3.1 is not read by order-svc; it reads 1, 2"
        );
    }
}
