//! Where the service keeps each object (`docs/requirements/placement.md` requirements 1-4, 9 and
//! 10), as pure logic over tables:
//!
//! - [`level`]: a user's level from the fee plan and contract years, by a rule table;
//! - [`risk`]: per-region hazard scores from a risk feed (CSV or JSON), and each site's risk;
//! - [`place`]: the two sites of an object, primary and secondary;
//! - [`envelope`]: per-site encryption of each copy under a rotatable keyring;
//! - [`marker`]: the marker object by which a site proves it is the configured one;
//! - [`integrity`]: what a check of an object's copies concludes, and where copies differ.
//!
//! The service loads the tables from its configuration and database and stores the copies; none
//! of that is here.

pub mod envelope;
pub mod integrity;
pub mod level;
pub mod marker;
pub mod place;
pub mod risk;

pub use level::{Level, LevelRule};
pub use place::{Candidate, Degraded, Placement, place};
pub use risk::RiskFeed;
