//! Durations as pipeline files write them: `500ms`, `2s`, `5m`, `1h`, `1m30s`.

use std::fmt;
use std::time::Duration as StdDuration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Duration(pub StdDuration);

impl Duration {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty duration".into());
        }
        let mut total = StdDuration::ZERO;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
            let (number, tail) = rest.split_at(digits);
            let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_len);
            let value: f64 = number.parse().map_err(|_| format!("invalid duration `{text}`"))?;
            let seconds = match unit {
                "ms" => value / 1000.0,
                "s" => value,
                "m" => value * 60.0,
                "h" => value * 3600.0,
                "" => return Err(format!("duration `{text}` has no unit")),
                other => return Err(format!("unknown duration unit `{other}` in `{text}`")),
            };
            total +=
                StdDuration::try_from_secs_f64(seconds).map_err(|_| format!("duration `{text}` is out of range"))?;
            rest = tail;
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(3_600_000) && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Duration::parse(&text).map_err(|e| {
            serde::de::Error::custom(format!("{e}: write a number and a unit, as in `500ms`, `2s`, `5m` or `1h`"))
        })
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$",
            "description": "A duration: a number and a unit (ms, s, m, h), e.g. `500ms`, `2s`, `5m`, `1m30s`."
        })
    }
}

/// An age: `30d`, `2w`, and everything a [`Duration`] takes (`12h`, `90m`).
pub(crate) fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    let days = |n: &str, per: u64| n.parse::<u64>().map(|n| std::time::Duration::from_secs(n * per * 86_400)).ok();
    if let Some(age) =
        text.strip_suffix('d').and_then(|n| days(n, 1)).or_else(|| text.strip_suffix('w').and_then(|n| days(n, 7)))
    {
        return Ok(age);
    }
    Duration::parse(text).map(|d| d.0).map_err(|e| format!("{e}; days and weeks work too: `30d`, `2w`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(Duration::parse("500ms").unwrap().0, StdDuration::from_millis(500));
        assert_eq!(Duration::parse("2s").unwrap().0, StdDuration::from_secs(2));
        assert_eq!(Duration::parse("5m").unwrap().0, StdDuration::from_secs(300));
        assert_eq!(Duration::parse("1m30s").unwrap().0, StdDuration::from_secs(90));
        assert_eq!(Duration::parse("1.5s").unwrap().0, StdDuration::from_millis(1500));
        assert!(Duration::parse("5").unwrap_err().contains("no unit"));
        assert!(Duration::parse("5x").unwrap_err().contains("unknown duration unit `x`"));
        assert_eq!(Duration::parse("90s").unwrap().to_string(), "90s");
        assert_eq!(Duration::parse("5m").unwrap().to_string(), "5m");
    }
}
