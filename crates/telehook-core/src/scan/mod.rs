//! The update probe: one pass over a webhook body that validates it as JSON (as strictly as
//! `serde_json` parsing it into a `serde_json::Value`) and picks out the few fields the
//! dispatcher needs, without building anything for the rest.
//!
//! `serde_json` with `IgnoredAny` does the same job at about three times the cost per byte,
//! because every skipped key and value goes through serde's visitor machinery. The dispatcher
//! runs this on every delivery, so it is written out here; `tests` compares it with
//! `serde_json::Value` on every fixture and on thousands of mutated bodies.
//!
//! At ~580 lines this file is above the ~500 the project aims for, on purpose: it is one
//! grammar (RFC 8259) walked by one `Scanner`, whose parts (objects, numbers, strings, escapes)
//! call each other; split across files, a reader would have to hold them all open at once.
//! Its tests live in `tests.rs`.

use std::borrow::Cow;

use crate::invalid::InvalidUpdate;

/// Nesting levels allowed: serde_json's default recursion limit refuses a 128th, and so does
/// the probe, so a body it accepts can always be parsed by the handler.
const MAX_DEPTH: usize = 127;

/// What the probe found in a valid body that is an object.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Probe<'a> {
    /// `update_id`: `Some(Ok)` for a non-negative integer, `Some(Err)` for another value or a
    /// duplicate.
    pub(crate) update_id: Option<Result<u64, InvalidUpdate>>,
    /// The first key other than `update_id`, decoded.
    pub(crate) kind: Option<Cow<'a, [u8]>>,
    /// The fields of that key's value, if it is an object.
    pub(crate) payload: Option<Payload>,
}

/// The fields of a payload that name its chat, its sender or its own id. A field of another
/// shape than expected is `None`: an odd payload is still an update.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Payload {
    /// `chat.id`
    pub(crate) chat: Option<i64>,
    /// `from.id`
    pub(crate) from: Option<i64>,
    /// `user.id`
    pub(crate) user: Option<i64>,
    /// `message.chat.id` (callback queries)
    pub(crate) message_chat: Option<i64>,
    /// `id` when it is a string (polls)
    pub(crate) id: Option<String>,
    /// `poll_id` when it is a string (poll answers)
    pub(crate) poll_id: Option<String>,
    /// `new_chat_member.user.id` (member changes)
    pub(crate) member: Option<i64>,
}

impl Payload {
    /// The same fields read from a parsed payload; `None` if it is not an object.
    pub(crate) fn from_value(payload: &serde_json::Value) -> Option<Self> {
        use serde_json::Value;
        let p = payload.as_object()?;
        let id = |name: &str| {
            p.get(name)
                .and_then(|o| o.get("id"))
                .and_then(Value::as_i64)
        };
        Some(Self {
            chat: id("chat"),
            from: id("from"),
            user: id("user"),
            message_chat: p
                .get("message")
                .and_then(|m| m.get("chat"))
                .and_then(|c| c.get("id"))
                .and_then(Value::as_i64),
            id: p.get("id").and_then(Value::as_str).map(str::to_owned),
            poll_id: p.get("poll_id").and_then(Value::as_str).map(str::to_owned),
            member: p
                .get("new_chat_member")
                .and_then(|m| m.get("user"))
                .and_then(|u| u.get("id"))
                .and_then(Value::as_i64),
        })
    }
}

/// Probes `raw`: `Ok(None)` for valid JSON that is not an object.
pub(crate) fn probe(raw: &[u8]) -> Result<Option<Probe<'_>>, InvalidUpdate> {
    // JSON text is UTF-8. One check of the whole body here lets the scanner treat strings as
    // bytes.
    if let Err(e) = std::str::from_utf8(raw) {
        return Err(InvalidUpdate::NotJson(format!("not UTF-8 ({e})")));
    }
    let mut s = Scanner { b: raw, i: 0 };
    s.ws();
    let probe = if s.peek() == Some(b'{') {
        Some(s.top_object()?)
    } else {
        s.skip_value(0)?;
        None
    };
    s.ws();
    if s.i < s.b.len() {
        return Err(s.error("trailing characters after the JSON value"));
    }
    Ok(probe)
}

/// True if `json` is an object with the top-level key `key` (escapes in keys decoded).
/// Invalid JSON has no keys.
pub(crate) fn has_top_level_key(json: &[u8], key: &[u8]) -> bool {
    if std::str::from_utf8(json).is_err() {
        return false;
    }
    let mut s = Scanner { b: json, i: 0 };
    s.ws();
    if s.peek() != Some(b'{') {
        return false;
    }
    let mut found = false;
    let scanned = s.object(0, |s, k| {
        found |= *k == *key;
        s.skip_value(1)
    });
    scanned.is_ok() && found
}

/// What a number turned out to be.
enum Number {
    /// Digits only, fitting u64.
    Unsigned(u64),
    /// A minus sign and digits, fitting i64.
    Negative(i64),
    /// Anything else: a fraction, an exponent, or an integer too large (a float to serde_json).
    Other,
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn error(&self, what: &str) -> InvalidUpdate {
        InvalidUpdate::NotJson(format!("{what} at byte {}", self.i))
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), InvalidUpdate> {
        self.ws();
        if self.peek() == Some(byte) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    /// Calls `field` for each key of the object starting here (at `{`); `field` must consume
    /// the value.
    fn object(
        &mut self,
        depth: usize,
        mut field: impl FnMut(&mut Self, Cow<'a, [u8]>) -> Result<(), InvalidUpdate>,
    ) -> Result<(), InvalidUpdate> {
        if depth >= MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        self.i += 1; // `{`
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a key string"));
            }
            let key = self.string()?;
            self.expect(b':', "expected `:`")?;
            self.ws();
            field(self, key)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    /// The update object. A key it holds twice is refused (after the whole body was checked,
    /// so invalid JSON is reported as such): serde_json's `Value` would keep the last copy and
    /// a derived struct would refuse the body, so no reading of it is safe.
    fn top_object(&mut self) -> Result<Probe<'a>, InvalidUpdate> {
        let mut probe = Probe::default();
        // Keys after the first kind: an update has one, so this stays empty (no allocation).
        let mut others: Vec<Cow<'a, [u8]>> = Vec::new();
        let mut duplicate: Option<Cow<'a, [u8]>> = None;
        self.object(0, |s, key| {
            if *key == *b"update_id" {
                probe.update_id = Some(if probe.update_id.is_some() {
                    s.skip_value(1)?;
                    Err(InvalidUpdate::DuplicateUpdateId)
                } else if s.peek().is_some_and(|b| b == b'-' || b.is_ascii_digit()) {
                    match s.number()? {
                        Number::Unsigned(id) => Ok(id),
                        _ => Err(InvalidUpdate::BadUpdateId),
                    }
                } else {
                    s.skip_value(1)?;
                    Err(InvalidUpdate::BadUpdateId)
                });
            } else if probe.kind.is_none() {
                probe.kind = Some(key);
                probe.payload = s.lenient_object(1, Self::payload_field)?;
            } else {
                if duplicate.is_none()
                    && (probe.kind.as_ref() == Some(&key) || others.contains(&key))
                {
                    duplicate = Some(key.clone());
                }
                others.push(key);
                s.skip_value(1)?;
            }
            Ok(())
        })?;
        if let Some(key) = duplicate {
            // The name goes into a short 400 body: cut and escaped.
            let name: String = String::from_utf8_lossy(&key).chars().take(32).collect();
            return Err(InvalidUpdate::Malformed(format!(
                "duplicate field {name:?}"
            )));
        }
        Ok(probe)
    }

    /// An object read field by field with `field`; any other value is skipped and gives `None`.
    fn lenient_object<T: Default>(
        &mut self,
        depth: usize,
        mut field: impl FnMut(&mut Self, &[u8], &mut T, usize) -> Result<(), InvalidUpdate>,
    ) -> Result<Option<T>, InvalidUpdate> {
        if self.peek() != Some(b'{') {
            self.skip_value(depth)?;
            return Ok(None);
        }
        let mut out = T::default();
        self.object(depth, |s, key| field(s, &key, &mut out, depth + 1))?;
        Ok(Some(out))
    }

    fn payload_field(
        &mut self,
        key: &[u8],
        p: &mut Payload,
        depth: usize,
    ) -> Result<(), InvalidUpdate> {
        match key {
            b"chat" => p.chat = self.id_object(depth)?,
            b"from" => p.from = self.id_object(depth)?,
            b"user" => p.user = self.id_object(depth)?,
            b"message" => p.message_chat = self.nested_id(depth, b"chat")?,
            b"new_chat_member" => p.member = self.nested_id(depth, b"user")?,
            b"id" => p.id = self.string_value(depth)?,
            b"poll_id" => p.poll_id = self.string_value(depth)?,
            _ => self.skip_value(depth)?,
        }
        Ok(())
    }

    /// `<inner>.id` of the object starting here (`message.chat.id`, say), if it has one.
    fn nested_id(&mut self, depth: usize, inner: &[u8]) -> Result<Option<i64>, InvalidUpdate> {
        Ok(self
            .lenient_object(depth, |s, key, id: &mut Option<i64>, depth| {
                if key == inner {
                    *id = s.id_object(depth)?;
                } else {
                    s.skip_value(depth)?;
                }
                Ok(())
            })?
            .flatten())
    }

    /// The value starting here if it is a string; any other value is skipped and gives `None`.
    fn string_value(&mut self, depth: usize) -> Result<Option<String>, InvalidUpdate> {
        if self.peek() == Some(b'"') {
            // Valid UTF-8: the whole body was checked, and escapes decode to UTF-8.
            Ok(Some(String::from_utf8_lossy(&self.string()?).into_owned()))
        } else {
            self.skip_value(depth)?;
            Ok(None)
        }
    }

    /// The integer `id` of an object such as `chat` or `from`, if it has one that fits i64.
    fn id_object(&mut self, depth: usize) -> Result<Option<i64>, InvalidUpdate> {
        Ok(self
            .lenient_object(depth, |s, key, id: &mut Option<i64>, depth| {
                if key == b"id" && s.peek().is_some_and(|b| b == b'-' || b.is_ascii_digit()) {
                    *id = match s.number()? {
                        Number::Unsigned(v) => i64::try_from(v).ok(),
                        Number::Negative(v) => Some(v),
                        Number::Other => None,
                    };
                } else if key == b"id" {
                    s.skip_value(depth)?;
                    *id = None;
                } else {
                    s.skip_value(depth)?;
                }
                Ok(())
            })?
            .flatten())
    }

    /// Skips one value, validating it.
    fn skip_value(&mut self, depth: usize) -> Result<(), InvalidUpdate> {
        self.ws();
        match self.peek() {
            Some(b'{') => self.object(depth, |s, _| s.skip_value(depth + 1)),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.skip_string(),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.error("unexpected end of input")),
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), InvalidUpdate> {
        if depth >= MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        self.i += 1; // `[`
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.skip_value(depth + 1)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), InvalidUpdate> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.error("expected a value"))
        }
    }

    /// A number per RFC 8259. Like serde_json, a number too large for f64 is an error.
    fn number(&mut self) -> Result<Number, InvalidUpdate> {
        let start = self.i;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let digits = self.i;
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    self.i += 1;
                }
            }
            _ => return Err(self.error("invalid number")),
        }
        let int_end = self.i;
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return Err(self.error("invalid number"));
            }
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.i += 1;
            }
            float = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return Err(self.error("invalid number"));
            }
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.i += 1;
            }
            float = true;
        }
        if float {
            return self.float(start);
        }
        let mut value: u64 = 0;
        for &d in &self.b[digits..int_end] {
            match value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
            {
                Some(v) => value = v,
                // Larger than u64: serde_json reads it as a float, which may be out of range.
                None => return self.float(start),
            }
        }
        if !negative {
            return Ok(Number::Unsigned(value));
        }
        Ok(match 0i64.checked_sub_unsigned(value) {
            // serde_json reads `-0` as the float -0.0, not as the integer 0.
            Some(0) => Number::Other,
            Some(v) => Number::Negative(v),
            None => self.float(start)?,
        })
    }

    /// A number serde_json reads as a float (a fraction, an exponent, an integer beyond
    /// 64 bits): whether it is in range is decided by serde_json itself, so the two never
    /// disagree at the edge of `f64` (its fast float parser and Rust's `str::parse` round the
    /// last digits differently). Rare in updates (locations, a few prices), so the cost of
    /// the second look does not matter.
    fn float(&mut self, start: usize) -> Result<Number, InvalidUpdate> {
        match serde_json::from_slice::<serde_json::Value>(&self.b[start..self.i]) {
            Ok(_) => Ok(Number::Other),
            Err(_) => {
                self.i = start;
                Err(self.error("number out of range"))
            }
        }
    }

    /// Skips a string (at its opening quote), validating its escapes.
    fn skip_string(&mut self) -> Result<(), InvalidUpdate> {
        self.i += 1;
        loop {
            let Some(at) = find_special(&self.b[self.i..]) else {
                self.i = self.b.len();
                return Err(self.error("unterminated string"));
            };
            self.i += at;
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Ok(());
                }
                b'\\' => {
                    self.escape(None)?;
                }
                _ => return Err(self.error("control character in a string")),
            }
        }
    }

    /// A string (at its opening quote): borrowed from the body, or decoded if it has escapes.
    fn string(&mut self) -> Result<Cow<'a, [u8]>, InvalidUpdate> {
        self.i += 1;
        let start = self.i;
        let mut decoded: Option<Vec<u8>> = None;
        let mut run = start;
        loop {
            let Some(at) = find_special(&self.b[self.i..]) else {
                self.i = self.b.len();
                return Err(self.error("unterminated string"));
            };
            self.i += at;
            match self.b[self.i] {
                b'"' => {
                    let end = self.i;
                    self.i += 1;
                    return Ok(match decoded {
                        None => Cow::Borrowed(&self.b[start..end]),
                        Some(mut out) => {
                            out.extend_from_slice(&self.b[run..end]);
                            Cow::Owned(out)
                        }
                    });
                }
                b'\\' => {
                    let out = decoded.get_or_insert_with(Vec::new);
                    out.extend_from_slice(&self.b[run..self.i]);
                    self.escape(Some(out))?;
                    run = self.i;
                }
                _ => return Err(self.error("control character in a string")),
            }
        }
    }

    /// One escape (at its backslash), appended decoded to `out` if given.
    fn escape(&mut self, out: Option<&mut Vec<u8>>) -> Result<(), InvalidUpdate> {
        let c = self.b.get(self.i + 1).copied();
        self.i += 2;
        let byte = match c {
            Some(b'"') => b'"',
            Some(b'\\') => b'\\',
            Some(b'/') => b'/',
            Some(b'b') => 0x08,
            Some(b'f') => 0x0c,
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'u') => {
                let ch = self.unicode_escape()?;
                if let Some(out) = out {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                return Ok(());
            }
            None => {
                self.i = self.b.len();
                return Err(self.error("unterminated string"));
            }
            Some(_) => {
                self.i -= 1;
                return Err(self.error("invalid escape"));
            }
        };
        if let Some(out) = out {
            out.push(byte);
        }
        Ok(())
    }

    /// The character of a `\u` escape (just after the `u`), with its surrogate pair if any.
    fn unicode_escape(&mut self) -> Result<char, InvalidUpdate> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.b.get(self.i) != Some(&b'\\') || self.b.get(self.i + 1) != Some(&b'u') {
                    return Err(self.error("lone leading surrogate in a \\u escape"));
                }
                self.i += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error("invalid surrogate pair in a \\u escape"));
                }
                0x10000 + ((u32::from(first) - 0xD800) << 10) + (u32::from(second) - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.error("lone trailing surrogate in a \\u escape")),
            code => u32::from(code),
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))
    }

    fn hex4(&mut self) -> Result<u16, InvalidUpdate> {
        let Some(digits) = self.b.get(self.i..self.i + 4) else {
            self.i = self.b.len();
            return Err(self.error("unterminated \\u escape"));
        };
        let mut value = 0u16;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.error("invalid \\u escape")),
            };
            value = value << 4 | u16::from(v);
        }
        self.i += 4;
        Ok(value)
    }
}

/// The index of the first byte in `bytes` that ends a run of plain string content: a quote, a
/// backslash or a control character. Eight bytes at a time: for each of the three tests, a
/// byte that matches sets its high bit in `hit`; borrows only run upward, so the lowest set bit
/// is always a true match.
fn find_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let hit = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w);
        let hit = hit & HIGH;
        if hit != 0 {
            return Some(offset + (hit.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|at| offset + at)
}

#[cfg(test)]
mod tests;
