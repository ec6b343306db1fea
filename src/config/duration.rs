//! Durations as operators write them (`250ms`, `10s`, `5m`, `1h`, or bare seconds), on the
//! command line and in the TOML file alike, with a ceiling so a deadline never overflows the
//! clock.

use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// A duration written `250ms`, `10s`, `5m`, `1h` or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl FromStr for Seconds {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("'{s}' is not a duration; write e.g. 250ms, 10s, 5m or 1h"))?;
        let scale = match unit {
            "ms" => 1,
            "" | "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(format!("'{s}': unknown unit '{unit}'; use ms, s, m or h")),
        };
        Seconds::within_ceiling(n.checked_mul(scale).map(Duration::from_millis), s)
    }
}

impl Seconds {
    /// The longest duration accepted: ten years. Longer values are typos, and deadlines are
    /// added to the clock, which must not overflow.
    pub const CEILING: Duration = Duration::from_secs(10 * 365 * 86_400);

    fn within_ceiling(d: Option<Duration>, text: &str) -> Result<Seconds, String> {
        d.filter(|d| *d <= Self::CEILING)
            .map(Seconds)
            .ok_or_else(|| format!("'{text}' is longer than the ten-year ceiling"))
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(n) => Seconds::within_ceiling(Some(Duration::from_secs(n)), &n.to_string())
                .map_err(serde::de::Error::custom),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!("250ms".parse(), Ok(Seconds(Duration::from_millis(250))));
        assert_eq!("10".parse(), Ok(Seconds(Duration::from_secs(10))));
        assert_eq!("5m".parse(), Ok(Seconds(Duration::from_secs(300))));
        assert!("10 parsecs".parse::<Seconds>().is_err());
        assert!("s".parse::<Seconds>().is_err());
        assert!("5124095576030432h".parse::<Seconds>().is_err());
        assert!("18446744073709551615".parse::<Seconds>().is_err());
        assert!(
            toml::from_str::<super::super::Options>("idle-timeout = 18446744073709551615").is_err()
        );
        assert_eq!(
            "3650d".parse::<Seconds>().map(|_| ()),
            Err("'3650d': unknown unit 'd'; use ms, s, m or h".into())
        );
    }
}
