//! QuickBooks Online's request limits, which the runtime's limiter keeps to.

use std::time::Duration;

use overdued_connector::runtime::LimitSpec;

/// 500 requests a minute and 10 concurrent per realm; no daily cap.
pub const LIMITS: LimitSpec = LimitSpec {
    per_window: 500,
    window: Duration::from_secs(60),
    concurrent: 10,
    per_day: None,
    day: Duration::from_secs(86_400),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acceleration_shrinks_windows_only() {
        let s = LIMITS.accelerated(60);
        assert_eq!(s.window, Duration::from_secs(1));
        assert_eq!(s.per_window, 500);
        assert_eq!(s.concurrent, 10);
        assert_eq!(s.per_day, None);
    }
}
