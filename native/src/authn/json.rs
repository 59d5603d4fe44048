//! Strict JSON for JOSE (RFC 7515 §5.2, RFC 7519 §4): a header or payload
//! with a duplicate member name anywhere is refused, since another parser may
//! keep the other copy (serde_json alone keeps the last one).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A JSON value parsed with duplicate members refused at every depth.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Strict, E> {
        Number::from_f64(v)
            .map(|n| Strict(Value::Number(n)))
            .ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Strict(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if members.insert(name, value).is_some() {
                return Err(de::Error::custom("duplicate member"));
            }
        }
        Ok(Strict(Value::Object(members)))
    }
}

/// Parse `data` as one JSON object, refusing duplicate members at any depth.
pub fn object(data: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Strict>(data) {
        Ok(Strict(Value::Object(map))) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_object() {
        let map = object(br#"{"a":1,"b":{"c":[true,null,"x"]}}"#).expect("object");
        assert_eq!(map.get("a"), Some(&Value::from(1)));
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn refuses_duplicates_at_any_depth() {
        assert!(object(br#"{"a":1,"a":2}"#).is_none());
        assert!(object(br#"{"a":{"b":1,"b":1}}"#).is_none());
        assert!(object(br#"{"a":[{"b":1,"b":2}]}"#).is_none());
    }

    #[test]
    fn refuses_non_objects_and_garbage() {
        assert!(object(b"[1]").is_none());
        assert!(object(b"\"x\"").is_none());
        assert!(object(b"{").is_none());
        assert!(object(br#"{"a":1} x"#).is_none());
    }
}
