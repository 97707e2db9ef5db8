//! A small JSON writer: objects of numbers, strings, booleans, arrays and nested objects. Enough
//! for the tool's reports, with no dependency.

use std::fmt::Write as _;

/// A JSON value being built.
pub enum Value {
    /// A whole number.
    U64(u64),
    /// A string (escaped on output).
    Str(String),
    /// `true` or `false`.
    Bool(bool),
    /// An array.
    Array(Vec<Value>),
    /// An object, keys in insertion order.
    Object(Object),
}

/// A JSON object, keys in insertion order.
#[derive(Default)]
pub struct Object(Vec<(&'static str, Value)>);

impl Object {
    /// An empty object.
    pub fn new() -> Object {
        Object::default()
    }

    /// Adds `key: value`.
    pub fn set(mut self, key: &'static str, value: impl Into<Value>) -> Object {
        self.0.push((key, value.into()));
        self
    }

    /// The object as compact JSON text.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        write_object(&mut out, self);
        out
    }
}

impl Value {
    /// A 64-bit word (a handle, a root, a raw header word) as a decimal string: JSON readers that
    /// hold numbers as doubles (`jq`, JavaScript) round anything above 2^53, so such words are
    /// always strings, whatever their value.
    pub fn word(n: u64) -> Value {
        Value::Str(n.to_string())
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::U64(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v)
    }
}

impl From<Object> for Value {
    fn from(v: Object) -> Value {
        Value::Object(v)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Value {
        Value::Array(v.into_iter().map(Into::into).collect())
    }
}

fn write_object(out: &mut String, o: &Object) {
    out.push('{');
    for (i, (k, v)) in o.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, k);
        out.push(':');
        write_value(out, v);
    }
    out.push('}');
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::U64(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Str(s) => write_str(out, s),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(o) => write_object(out, o),
    }
}

/// A string literal with JSON's escapes (RFC 8259 §7).
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_nests() {
        let o = Object::new()
            .set("a", 1u64)
            .set("s", "q\"\\\n\u{1}é")
            .set("l", vec![1u64, 2])
            .set("o", Object::new().set("t", true));
        assert_eq!(
            o.to_json(),
            r#"{"a":1,"s":"q\"\\\n\u0001é","l":[1,2],"o":{"t":true}}"#
        );
    }
}
