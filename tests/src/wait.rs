//! Waiting for the system under test: [`wait_until`] looks again and again until a check is
//! ready or the time is up, then panics naming what it waited for and what it saw last.
//! [`Wait`] is the same with a fixed pause, or returning the last observation instead of
//! panicking.
//!
//! A check answers with anything [`Ready`]: `bool`, `Option<T>` (ready with `T`), or
//! `Result<T, E>`, ready with `T` or not yet with `E`, what it saw (shown on timeout).
//!
//! ```ignore
//! let record = wait_until("the draw", Duration::from_secs(60), async || {
//!     let (_, record) = tally_tests::get(&http, &url).await;
//!     if record["status"] == "drawn" { Ok(record) } else { Err(record) }
//! })
//! .await;
//! ```

use std::fmt::Display;
use std::time::Duration;
use tokio::time::Instant;

/// The first pause between two looks; it doubles up to [`LONGEST_PAUSE`]: a state that is
/// nearly reached is seen at once, one that takes long costs few looks.
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const LONGEST_PAUSE: Duration = Duration::from_millis(100);

/// What one look found: ready, with the value the wait returns, or not yet, with what was
/// seen instead.
pub trait Ready {
    type Value;
    type Seen;
    fn ready(self) -> Result<Self::Value, Self::Seen>;
}

/// What a `false` or a `None` saw.
#[derive(Debug, Clone, Copy)]
pub struct NotYet;

impl Display for NotYet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not yet")
    }
}

impl Ready for bool {
    type Value = ();
    type Seen = NotYet;
    fn ready(self) -> Result<(), NotYet> {
        if self { Ok(()) } else { Err(NotYet) }
    }
}

impl<T> Ready for Option<T> {
    type Value = T;
    type Seen = NotYet;
    fn ready(self) -> Result<T, NotYet> {
        self.ok_or(NotYet)
    }
}

impl<T, E> Ready for Result<T, E> {
    type Value = T;
    type Seen = E;
    fn ready(self) -> Result<T, E> {
        self
    }
}

/// Runs `check` until it is ready and returns its value; panics after `within` with `what`
/// (phrased as what is awaited: "the writer to store 300 votes") and the last thing seen.
pub async fn wait_until<R>(
    what: impl Display,
    within: Duration,
    check: impl AsyncFnMut() -> R,
) -> R::Value
where
    R: Ready,
    R::Seen: Display,
{
    Wait::new(what, within).until(check).await
}

/// A wait with its settings: how long, and how often to look.
#[derive(Debug, Clone)]
pub struct Wait {
    what: String,
    within: Duration,
    every: Option<Duration>,
}

impl Wait {
    pub fn new(what: impl Display, within: Duration) -> Self {
        Self {
            what: what.to_string(),
            within,
            every: None,
        }
    }

    /// Looks every `pause` rather than at first often, then every 100 ms.
    pub fn every(mut self, pause: Duration) -> Self {
        self.every = Some(pause);
        self
    }

    /// [`wait_until`] with these settings.
    pub async fn until<R>(&self, check: impl AsyncFnMut() -> R) -> R::Value
    where
        R: Ready,
        R::Seen: Display,
    {
        match self.try_until(check).await {
            Ok(value) => value,
            Err(seen) => panic!(
                "waited {:?} for {}; last seen: {seen}",
                self.within, self.what
            ),
        }
    }

    /// Runs `check` until it is ready (`Ok` with its value) or the time is up (`Err` with the
    /// last thing it saw), for a caller that reports a timeout itself.
    pub async fn try_until<R: Ready>(
        &self,
        mut check: impl AsyncFnMut() -> R,
    ) -> Result<R::Value, R::Seen> {
        let deadline = Instant::now() + self.within;
        let mut pause = self.every.unwrap_or(FIRST_PAUSE);
        loop {
            let seen = match check().await.ready() {
                Ok(value) => return Ok(value),
                Err(seen) => seen,
            };
            if Instant::now() >= deadline {
                return Err(seen);
            }
            tokio::time::sleep(pause).await;
            if self.every.is_none() {
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_check_that_becomes_ready_returns_its_value() {
        let mut looks = 0;
        let value = wait_until("the third look", Duration::from_secs(5), async || {
            looks += 1;
            if looks == 3 { Ok(looks) } else { Err(looks) }
        })
        .await;
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn a_timeout_returns_the_last_observation() {
        let mut looks = 0;
        let last = Wait::new("never", Duration::from_millis(50))
            .every(Duration::from_millis(10))
            .try_until(async || {
                looks += 1;
                Err::<(), _>(looks)
            })
            .await;
        assert_eq!(last, Err(looks));
        assert!(looks > 1);
    }

    #[tokio::test]
    #[should_panic(expected = "for the impossible; last seen: not yet")]
    async fn a_timeout_panics_naming_what_was_awaited() {
        wait_until("the impossible", Duration::from_millis(20), async || false).await;
    }
}
