//! The quick runner's mutator: byte edits, splices of corpus entries, and the tokens of
//! `fuzz/json.dict` (the AFL++ dictionary), driven by a seeded xorshift generator so that a run
//! is repeatable from its seed. No coverage feedback: this is for a bounded CI run; the long
//! runs use AFL++.

/// Inputs are cut to this size.
pub const MAX_INPUT: usize = 8192;

/// A small, seeded, deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value below `n` (0 for `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Parses an AFL++ dictionary (`name="value"` lines, `\xNN`, `\\` and `\"` escapes).
pub fn parse_dict(text: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let (Some(start), Some(end)) = (line.find('"'), line.rfind('"')) else {
            continue;
        };
        if end <= start {
            continue;
        }
        let raw = &line.as_bytes()[start + 1..end];
        let mut token = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'\\' && i + 1 < raw.len() {
                if raw[i + 1] == b'x' && i + 3 < raw.len() {
                    let hex = std::str::from_utf8(&raw[i + 2..i + 4]).unwrap_or("");
                    if let Ok(b) = u8::from_str_radix(hex, 16) {
                        token.push(b);
                        i += 4;
                        continue;
                    }
                }
                token.push(raw[i + 1]);
                i += 2;
            } else {
                token.push(raw[i]);
                i += 1;
            }
        }
        out.push(token);
    }
    out
}

/// A mutant of `input`: one to four edits, possibly a splice with `other`.
pub fn mutate(input: &[u8], other: &[u8], dict: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    let edits = 1 + rng.below(4);
    for _ in 0..edits {
        let len = out.len();
        match rng.below(11) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next_u64() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                const CHARS: &[u8] = b"{}[]\",:-0123456789.eE \\u";
                out.insert(i, CHARS[rng.below(CHARS.len())]);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                out.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let chunk = out[i..i + n].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, chunk);
            }
            5..=7 if !dict.is_empty() => {
                let token = &dict[rng.below(dict.len())];
                let i = rng.below(len + 1);
                out.splice(i..i, token.iter().copied());
            }
            8 if !dict.is_empty() => {
                // Replace a number (or any run of number characters) with a token.
                if let Some(i) = (0..len)
                    .map(|k| (k + rng.below(len.max(1))) % len)
                    .find(|&k| out[k].is_ascii_digit() || out[k] == b'-')
                {
                    let mut j = i;
                    while j < len
                        && matches!(out[j], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                    {
                        j += 1;
                    }
                    let token = &dict[rng.below(dict.len())];
                    out.splice(i..j, token.iter().copied());
                }
            }
            9 if !other.is_empty() => {
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            _ => {
                // Repeat a `"key":value` looking stretch: duplicated keys and kinds.
                if let Some(i) = (0..len).find(|&k| out[k] == b',' && rng.below(3) == 0) {
                    let end = (i + 1 + rng.below(48)).min(len);
                    let chunk = out[i..end].to_vec();
                    out.splice(i..i, chunk);
                }
            }
        }
    }
    out.truncate(MAX_INPUT);
    out
}
