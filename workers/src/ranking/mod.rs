//! Rankings computed from all of an arena's votes, beside the live Elo the aggregator keeps.
//!
//! - [`bradley_terry`]: the model, its fit and bootstrap intervals (pure).
//! - [`job`]: the scheduled apalis job that fits every arena with new votes and stores the
//!   result in Postgres and Redis.

pub mod bradley_terry;
pub mod job;
