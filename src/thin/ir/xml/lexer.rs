//! A small streaming XML tokenizer for thin_dump documents.
//!
//! It reads large chunks into one buffer and hands out tags as slices of it,
//! so the common line (`<range_mapping .../>`) costs one scan and no copy.
//! It knows just enough XML for thin_dump documents: start, end and empty tags with
//! single- or double-quoted attributes, character data (ignored), comments
//! (ignored), the XML declaration, and the constructs we refuse (DOCTYPE,
//! CDATA, processing instructions). Offsets are absolute byte offsets in the
//! input.

use std::io::{self, Read};

/// Initial buffer size and read size.
const CHUNK: usize = 4 << 20;
/// Longest tag accepted.
const MAX_TAG: usize = 16 << 20;

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// `<name ...>`
    Start,
    /// `<name .../>`
    Empty,
    /// `</name>`
    End,
    /// `<?xml ...?>`
    Decl,
    /// DOCTYPE, CDATA or a processing instruction.
    Unsupported,
    /// Character data containing a NUL byte (binary input).
    Binary,
    /// End of input.
    Eof,
}

pub use crate::thin::ir::error::LexError;

/// Which mapping element [`Lexer::canonical_mapping`] read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappingTag {
    /// `<single_mapping origin_block data_block time/>`
    Single,
    /// `<range_mapping origin_begin data_begin length time/>`
    Range,
}

/// One attribute: where its name and raw value (no entity expansion) lie in
/// the lexer's buffer; read them with [`Lexer::bytes`].
#[derive(Clone, Copy, Debug)]
pub struct Attr {
    /// Attribute name.
    pub name: (usize, usize),
    /// Attribute value between the quotes.
    pub value: (usize, usize),
}

/// The streaming tokenizer.
pub struct Lexer<R> {
    input: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    base: u64,
    eof: bool,
    tag: (usize, usize),
    name: (usize, usize),
    after: u64,
    /// Whether a `<` has been met yet.
    markup_seen: bool,
    /// The first character data before any markup: offset and a sample.
    stray: Option<(u64, String)>,
}

/// Bytes of stray text quoted in a message.
const STRAY_SAMPLE: usize = 16;

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.') || b >= 0x80
}

impl<R: Read> Lexer<R> {
    /// A lexer over `input`.
    pub fn new(input: R) -> Self {
        Lexer {
            input,
            buf: vec![0; CHUNK],
            pos: 0,
            end: 0,
            base: 0,
            eof: false,
            tag: (0, 0),
            name: (0, 0),
            after: 0,
            markup_seen: false,
            stray: None,
        }
    }

    /// The first character data met before any markup (the input is then not
    /// XML): its offset and its first bytes, escaped.
    #[must_use]
    pub fn stray_text(&self) -> Option<(u64, &str)> {
        self.stray.as_ref().map(|(at, s)| (*at, s.as_str()))
    }

    /// Remembers the first non-space byte of `self.buf[from..to]` when no
    /// markup has been seen yet.
    #[cold]
    fn note_stray(&mut self, from: usize, to: usize) {
        let text = &self.buf[from..to];
        if let Some(i) = text.iter().position(|&b| !is_space(b)) {
            let sample = &text[i..text.len().min(i + STRAY_SAMPLE)];
            let at = self.base + (from + i) as u64;
            self.stray = Some((at, sample.escape_ascii().to_string()));
        }
    }

    /// Offset just past the last token.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.after
    }

    /// Bytes of a range returned by [`Lexer::attributes`].
    #[must_use]
    pub fn bytes(&self, r: (usize, usize)) -> &[u8] {
        &self.buf[r.0..r.1]
    }

    /// Name of the last tag token.
    #[must_use]
    pub fn name(&self) -> &[u8] {
        &self.buf[self.name.0..self.name.1]
    }

    /// Moves unread bytes to the front and reads more; false at end of input.
    fn refill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.base += self.pos as u64;
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= MAX_TAG {
                return Ok(false);
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn syntax(&self, at: usize, detail: &'static str) -> LexError {
        LexError::Syntax {
            pos: self.base + at as u64,
            detail,
        }
    }

    /// Finds `pat` at or after `from`, refilling as needed; returns the index
    /// just past it, or `None` at end of input.
    fn find(&mut self, from: usize, pat: &[u8]) -> io::Result<Option<usize>> {
        let mut from = from;
        loop {
            if let Some(i) = memfind(&self.buf[from..self.end], pat) {
                return Ok(Some(from + i + pat.len()));
            }
            let next_from = self.end.saturating_sub(pat.len() - 1).max(from) - self.pos;
            if !self.refill()? {
                return Ok(None);
            }
            from = self.pos + next_from;
        }
    }

    /// End (index past `>`) of the tag starting at `self.pos`, quote-aware.
    fn tag_end(&mut self) -> Result<usize, LexError> {
        // Fast path: the first '>' ends the tag when no single quote comes
        // before it and the double quotes before it are balanced.
        if let Some(j) = memchr(b'>', &self.buf[self.pos + 1..self.end]) {
            let tag = &self.buf[self.pos + 1..self.pos + 1 + j];
            let quotes = tag.iter().filter(|&&b| b == b'"').count();
            if quotes % 2 == 0 && memchr::memchr2(b'\'', b'<', tag).is_none() {
                return Ok(self.pos + 2 + j);
            }
        }
        let mut i = self.pos + 1;
        loop {
            if let Some(j) = memchr::memchr3(b'>', b'"', b'\'', &self.buf[i..self.end]) {
                let q = self.buf[i + j];
                if q == b'>' {
                    let e = i + j + 1;
                    if let Some(k) = memchr::memchr(b'<', &self.buf[self.pos + 1..e]) {
                        return Err(self.syntax(self.pos + 1 + k, "unterminated tag"));
                    }
                    return Ok(e);
                }
                if let Some(k) = memchr::memchr(q, &self.buf[i + j + 1..self.end]) {
                    i += j + k + 2;
                    continue;
                }
            }
            let off = i - self.pos;
            if !self.refill()? {
                return Err(self.syntax(self.end, "unexpected end of input inside a tag"));
            }
            i = self.pos + off;
        }
    }

    /// The next token.
    ///
    /// # Errors
    /// Malformed markup or a read error.
    pub fn next_token(&mut self) -> Result<TokenKind, LexError> {
        if let Some(t) = self.skip_text()? {
            return Ok(t);
        }
        let rest = &self.buf[self.pos..self.end];
        if rest.starts_with(b"<!--") {
            let Some(e) = self.find(self.pos + 4, b"-->")? else {
                return Err(self.syntax(self.end, "unterminated comment"));
            };
            self.pos = e;
            return self.next_token();
        }
        if rest.starts_with(b"<?") {
            return self.processing_instruction();
        }
        if rest.starts_with(b"<!") {
            return self.markup_declaration();
        }
        self.tag()
    }

    /// Skips character data up to the next '<'. Returns the token when the
    /// data holds a NUL byte or the input ends, None at a '<'.
    #[inline]
    fn skip_text(&mut self) -> Result<Option<TokenKind>, LexError> {
        loop {
            let text = &self.buf[self.pos..self.end];
            // Text between tags is usually a newline and indentation: a plain
            // loop beats a vectorised search there.
            let short = text.iter().take(32).position(|&b| b == b'<' || b == 0);
            let lt = match short {
                Some(i) if text[i] == b'<' => Some(i),
                Some(_) => memchr(b'<', text),
                None if text.len() <= 32 => None,
                None => memchr(b'<', text),
            };
            let upto = lt.unwrap_or(text.len());
            if !self.markup_seen {
                if self.stray.is_none() {
                    self.note_stray(self.pos, self.pos + upto);
                }
                self.markup_seen = lt.is_some();
            }
            let text = &self.buf[self.pos..self.end];
            if memchr(0, &text[..upto]).is_some() {
                self.after = self.base + (self.pos + upto) as u64;
                return Ok(Some(TokenKind::Binary));
            }
            self.pos += upto;
            if lt.is_some() && self.end - self.pos >= 4 {
                return Ok(None);
            }
            if !self.refill()? {
                if self.pos < self.end {
                    return Ok(None);
                }
                self.after = self.base + self.end as u64;
                return Ok(Some(TokenKind::Eof));
            }
        }
    }

    /// `<?...?>`: the XML declaration, or an unsupported instruction.
    fn processing_instruction(&mut self) -> Result<TokenKind, LexError> {
        let Some(e) = self.find(self.pos + 2, b"?>")? else {
            return Err(self.syntax(self.end, "unterminated processing instruction"));
        };
        let body = &self.buf[self.pos + 2..e];
        let decl =
            body.starts_with(b"xml") && body.get(3).is_some_and(|&b| is_space(b) || b == b'?');
        self.after = self.base + e as u64;
        self.pos = e;
        Ok(if decl {
            TokenKind::Decl
        } else {
            TokenKind::Unsupported
        })
    }

    /// `<!...>` or `<![CDATA[...]]>`: refused, skipped as one token.
    fn markup_declaration(&mut self) -> Result<TokenKind, LexError> {
        let rest = &self.buf[self.pos..self.end];
        let pat: &[u8] = if rest.starts_with(b"<![CDATA[") {
            b"]]>"
        } else {
            b">"
        };
        let Some(e) = self.find(self.pos + 2, pat)? else {
            return Err(self.syntax(self.end, "unterminated markup declaration"));
        };
        self.after = self.base + e as u64;
        self.pos = e;
        Ok(TokenKind::Unsupported)
    }

    /// A start, end or empty tag.
    #[inline]
    fn tag(&mut self) -> Result<TokenKind, LexError> {
        let end = self.tag_end()?;
        let start = self.pos;
        self.after = self.base + end as u64;
        self.pos = end;
        self.tag = (start, end);
        let closing = self.buf[start + 1] == b'/';
        let name_start = start + 1 + usize::from(closing);
        let mut n = name_start;
        while n < end && is_name_byte(self.buf[n]) {
            n += 1;
        }
        if n == name_start {
            return Err(self.syntax(name_start, "missing tag name"));
        }
        self.name = (name_start, n);
        if closing {
            if self.buf[n..end - 1].iter().any(|&b| !is_space(b)) {
                return Err(self.syntax(n, "unexpected content in end tag"));
            }
            return Ok(TokenKind::End);
        }
        Ok(if self.buf[end - 2] == b'/' {
            TokenKind::Empty
        } else {
            TokenKind::Start
        })
    }

    /// The bulk of a dump in one scan: when the input at the current
    /// position is a little whitespace and then a mapping element written
    /// exactly as thin_dump writes it (attributes in its order, plain
    /// digits, at most 18 each, one space apart, `"/>` at the end), consumes
    /// it as [`Lexer::next_token`] would have (same tag, name and position)
    /// and returns its numbers in attribute order. Otherwise consumes
    /// nothing and returns None (the general path then reads the input).
    #[inline]
    pub fn canonical_mapping(&mut self) -> Option<(MappingTag, [u64; 4])> {
        const SINGLE: [&[u8]; 3] = [
            b"<single_mapping origin_block=\"",
            b"\" data_block=\"",
            b"\" time=\"",
        ];
        const RANGE: [&[u8]; 4] = [
            b"<range_mapping origin_begin=\"",
            b"\" data_begin=\"",
            b"\" length=\"",
            b"\" time=\"",
        ];
        if !self.markup_seen {
            return None;
        }
        let rest = &self.buf[self.pos..self.end];
        let ws = rest.iter().take(64).position(|&b| !is_space(b))?;
        let tag = &rest[ws..];
        let (kind, pieces, name_len): (_, &[&[u8]], _) = match tag.get(1) {
            Some(b's') => (MappingTag::Single, &SINGLE, 14),
            Some(b'r') => (MappingTag::Range, &RANGE, 13),
            _ => return None,
        };
        let mut values = [0u64; 4];
        let mut i = 0;
        for (k, piece) in pieces.iter().enumerate() {
            if tag.get(i..i + piece.len()) != Some(piece) {
                return None;
            }
            i += piece.len();
            let start = i;
            let mut v = 0u64;
            while let Some(&d) = tag.get(i) {
                if !d.is_ascii_digit() {
                    break;
                }
                // At most 18 digits are accepted: no overflow before the test.
                v = v.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                i += 1;
            }
            if i == start || i - start > 18 {
                return None;
            }
            values[k] = v;
        }
        if tag.get(i..i + 3) != Some(b"\"/>") {
            return None;
        }
        let start = self.pos + ws;
        let end = start + i + 3;
        self.tag = (start, end);
        self.name = (start + 1, start + 1 + name_len);
        self.after = self.base + end as u64;
        self.pos = end;
        Some((kind, values))
    }

    /// Fast path for the common line: the last tag's attributes are exactly
    /// `names`, in that order, each written `name="digits"` (at most 18
    /// digits) after one space. Fills `out` and returns true; returns false
    /// for anything else (the caller then takes the general path, which
    /// produces the exact error).
    #[must_use]
    pub fn canonical_numbers(&self, names: &[&[u8]], out: &mut [u64]) -> bool {
        let (_, end) = self.tag;
        let b = &self.buf[self.name.1..end];
        let mut i = 0;
        for (k, name) in names.iter().enumerate() {
            if b.get(i) != Some(&b' ') || b.get(i + 1..i + 1 + name.len()) != Some(name) {
                return false;
            }
            i += 1 + name.len();
            if b.get(i..i + 2) != Some(b"=\"") {
                return false;
            }
            i += 2;
            let start = i;
            let mut v = 0u64;
            while let Some(&d) = b.get(i) {
                if !d.is_ascii_digit() {
                    break;
                }
                // Values of more than 18 digits are refused below; wrapping
                // keeps the scan itself from overflowing before that.
                v = v.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                i += 1;
            }
            if i == start || i - start > 18 || b.get(i) != Some(&b'"') {
                return false;
            }
            i += 1;
            out[k] = v;
        }
        b.get(i..) == Some(b"/>")
    }

    /// The attributes of the last start or empty tag, into `out`.
    ///
    /// # Errors
    /// Bad attribute syntax.
    pub fn attributes(&self, out: &mut Vec<Attr>) -> Result<(), LexError> {
        out.clear();
        let (_, end) = self.tag;
        let stop = if self.buf[end - 2] == b'/' {
            end - 2
        } else {
            end - 1
        };
        let b = &self.buf[..stop];
        let mut i = self.name.1;
        loop {
            let had_space = i < stop && is_space(b[i]);
            while i < stop && is_space(b[i]) {
                i += 1;
            }
            if i >= stop {
                return Ok(());
            }
            if !had_space {
                return Err(self.syntax(i, "expected whitespace before attribute"));
            }
            let ns = i;
            while i < stop && is_name_byte(b[i]) {
                i += 1;
            }
            if i == ns {
                return Err(self.syntax(i, "bad attribute name"));
            }
            let ne = i;
            while i < stop && is_space(b[i]) {
                i += 1;
            }
            if i >= stop || b[i] != b'=' {
                return Err(self.syntax(i, "expected '=' after attribute name"));
            }
            i += 1;
            while i < stop && is_space(b[i]) {
                i += 1;
            }
            if i >= stop || (b[i] != b'"' && b[i] != b'\'') {
                return Err(self.syntax(i, "expected a quoted attribute value"));
            }
            let q = b[i];
            let vs = i + 1;
            let Some(len) = memchr(q, &b[vs..stop]) else {
                return Err(self.syntax(stop, "unterminated attribute value"));
            };
            out.push(Attr {
                name: (ns, ne),
                value: (vs, vs + len),
            });
            i = vs + len + 1;
        }
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(needle, hay)
}

fn memfind(hay: &[u8], pat: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, pat)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(s: &str) -> Vec<(TokenKind, String, u64)> {
        let mut l = Lexer::new(s.as_bytes());
        let mut out = Vec::new();
        loop {
            let t = l.next_token().unwrap();
            out.push((
                t,
                String::from_utf8_lossy(l.name()).into_owned(),
                l.position(),
            ));
            if t == TokenKind::Eof {
                return out;
            }
        }
    }

    /// The one-scan path consumes exactly what `next_token` would, and
    /// leaves anything not written as thin_dump writes it to the general path.
    #[test]
    fn canonical_mappings_are_read_as_next_token_reads_them() {
        let doc = "<d>\n    <single_mapping origin_block=\"7\" data_block=\"9\" time=\"3\"/>\n    \
                   <range_mapping origin_begin=\"1\" data_begin=\"2\" length=\"5\" time=\"0\"/>\n    \
                   <range_mapping origin_begin='1' data_begin=\"2\" length=\"5\" time=\"0\"/>\n    \
                   <single_mapping  origin_block=\"7\" data_block=\"9\" time=\"3\"/></d>";
        let general = tokens(doc);
        let mut l = Lexer::new(doc.as_bytes());
        assert_eq!(l.canonical_mapping(), None, "no markup seen yet");
        assert_eq!(l.next_token().unwrap(), TokenKind::Start);
        assert_eq!(
            l.canonical_mapping(),
            Some((MappingTag::Single, [7, 9, 3, 0]))
        );
        assert_eq!(
            (l.name(), l.position()),
            (&b"single_mapping"[..], general[1].2)
        );
        assert_eq!(
            l.canonical_mapping(),
            Some((MappingTag::Range, [1, 2, 5, 0]))
        );
        assert_eq!(
            (l.name(), l.position()),
            (&b"range_mapping"[..], general[2].2)
        );
        let before = l.position();
        assert_eq!(l.canonical_mapping(), None, "single quotes");
        assert_eq!(l.position(), before);
        assert_eq!(l.next_token().unwrap(), TokenKind::Empty);
        assert_eq!(l.canonical_mapping(), None, "two spaces");
        assert_eq!(l.next_token().unwrap(), TokenKind::Empty);
        assert_eq!(l.position(), general[4].2);
    }

    #[test]
    fn tags_and_offsets() {
        let t = tokens("<?xml version=\"1.0\"?>\n<a x='1>'>\n <!-- c --> <b y=\"2\"/></a>");
        assert_eq!(t[0].0, TokenKind::Decl);
        assert_eq!(t[0].2, 21);
        assert_eq!(
            (t[1].0, t[1].1.as_str(), t[1].2),
            (TokenKind::Start, "a", 32)
        );
        assert_eq!((t[2].0, t[2].1.as_str()), (TokenKind::Empty, "b"));
        assert_eq!((t[3].0, t[3].1.as_str()), (TokenKind::End, "a"));
        assert_eq!(t[4].0, TokenKind::Eof);
    }

    #[test]
    fn attributes_parse_with_spaces_and_quotes() {
        let mut l = Lexer::new(&b"<m a = \"1\" b='x y'/>"[..]);
        assert_eq!(l.next_token().unwrap(), TokenKind::Empty);
        let mut v = Vec::new();
        l.attributes(&mut v).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            (l.bytes(v[0].name), l.bytes(v[0].value)),
            (&b"a"[..], &b"1"[..])
        );
        assert_eq!(
            (l.bytes(v[1].name), l.bytes(v[1].value)),
            (&b"b"[..], &b"x y"[..])
        );
        let mut l = Lexer::new(&b"<m a=1/>"[..]);
        l.next_token().unwrap();
        assert!(l.attributes(&mut v).is_err());
    }

    #[test]
    fn binary_and_unterminated_input() {
        let mut l = Lexer::new(&b"\x12\x00\x00<superblock"[..]);
        assert_eq!(l.next_token().unwrap(), TokenKind::Binary);
        let mut l = Lexer::new(&b"<superblock uuid=\"\""[..]);
        assert!(matches!(l.next_token(), Err(LexError::Syntax { .. })));
        let mut l = Lexer::new(&b"<!DOCTYPE x>"[..]);
        assert_eq!(l.next_token().unwrap(), TokenKind::Unsupported);
        assert_eq!(l.position(), 12);
    }
}
