//! The `<def>` names of an XML input. The XML reader numbers the distinct
//! names of a document 0, 1, 2... in order of first definition; thin_dump
//! names its defs by leaf block numbers. To write the names the input used,
//! this scan lists them in the same order, and [`DefNames::original`] gives
//! a def's number back its name when every name is a decimal number.

use std::collections::HashSet;
use std::io::Read;

use crate::thin::ir::xml::lexer::{Attr, LexError, Lexer, TokenKind};

/// The names of an input's defs, by the number the XML reader gives them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DefNames {
    /// `names[k]` is the name of def number k; empty when some name is not
    /// a number (the numbers are then written as they are).
    names: Vec<u64>,
}

impl DefNames {
    /// Scans `input` for `<def name="...">` tags.
    ///
    /// # Errors
    /// Malformed markup or a read failure (the XML reader reports the same
    /// problem in the first pass, so this is rarely seen).
    pub fn scan<R: Read>(input: R) -> Result<DefNames, LexError> {
        let mut lex = Lexer::new(input);
        let mut attrs: Vec<Attr> = Vec::new();
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut names = Vec::new();
        let mut numeric = true;
        loop {
            match lex.next_token()? {
                TokenKind::Eof => break,
                TokenKind::Start if lex.name() == b"def" => {
                    lex.attributes(&mut attrs)?;
                    let Some(a) = attrs.iter().find(|a| lex.bytes(a.name) == b"name") else {
                        numeric = false;
                        continue;
                    };
                    let raw = lex.bytes(a.value).to_vec();
                    if seen.contains(&raw) {
                        continue;
                    }
                    match decimal(&raw) {
                        Some(v) => names.push(v),
                        None => numeric = false,
                    }
                    seen.insert(raw);
                }
                _ => {}
            }
        }
        if !numeric {
            names.clear();
        }
        Ok(DefNames { names })
    }

    /// The name to write for def number `k`.
    #[must_use]
    pub fn original(&self, k: u64) -> u64 {
        usize::try_from(k)
            .ok()
            .and_then(|i| self.names.get(i))
            .copied()
            .unwrap_or(k)
    }
}

/// A canonical decimal number (no sign, no leading zero, no spaces).
fn decimal(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || (raw.len() > 1 && raw[0] == b'0') || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(raw).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_names_come_back_in_order_of_first_definition() {
        let xml = br#"<superblock><def name="28"></def><def name="7"></def><def name="28"></def></superblock>"#;
        let n = DefNames::scan(&xml[..]).unwrap();
        assert_eq!((n.original(0), n.original(1), n.original(2)), (28, 7, 2));
    }

    #[test]
    fn any_other_name_keeps_the_numbers() {
        let xml = br#"<superblock><def name="28"></def><def name="x"></def></superblock>"#;
        let n = DefNames::scan(&xml[..]).unwrap();
        assert_eq!((n.original(0), n.original(1)), (0, 1));
    }
}
