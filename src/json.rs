//! A flat JSON object writer (strings, numbers, booleans, string lists), just
//! enough for audit records and `check --json`, with correct escaping.

#[derive(Default)]
pub struct Json(String);

impl Json {
    pub fn new() -> Json {
        Json(String::with_capacity(256))
    }

    fn key(&mut self, k: &str) {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        escape_into(&mut self.0, k);
        self.0.push(':');
    }

    pub fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        escape_into(&mut self.0, v);
    }

    pub fn opt_str(&mut self, k: &str, v: Option<&str>) {
        match v {
            Some(v) => self.str(k, v),
            None => {
                self.key(k);
                self.0.push_str("null");
            }
        }
    }

    pub fn list(&mut self, k: &str, items: &[String]) {
        self.key(k);
        self.0.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            escape_into(&mut self.0, item);
        }
        self.0.push(']');
    }

    pub fn num(&mut self, k: &str, v: i64) {
        self.key(k);
        self.0.push_str(&v.to_string());
    }

    pub fn bool(&mut self, k: &str, v: bool) {
        self.key(k);
        self.0.push_str(if v { "true" } else { "false" });
    }

    pub fn finish(mut self) -> String {
        self.0.push_str("}\n");
        self.0
    }
}

/// `s` as a JSON string literal, which is also a YAML double-quoted scalar
/// (the machine configs and manifests we write quote every string this way).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    escape_into(&mut out, s);
    out
}

fn escape_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
