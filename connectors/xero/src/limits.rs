//! Xero's request limits, which the runtime's limiter keeps to.

use std::time::Duration;

use overdued_connector::runtime::LimitSpec;

/// 60 a minute, 5 concurrent and 5000 a day per organisation.
pub const LIMITS: LimitSpec = LimitSpec {
    per_window: 60,
    window: Duration::from_secs(60),
    concurrent: 5,
    per_day: Some(5000),
    day: Duration::from_secs(86_400),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daily_cap_survives_acceleration() {
        assert_eq!(LIMITS.per_day, Some(5000));
        let s = LIMITS.accelerated(60);
        assert_eq!(s.window, Duration::from_secs(1));
        assert_eq!(s.day, Duration::from_secs(1440));
        assert_eq!(s.per_day, Some(5000));
    }
}
