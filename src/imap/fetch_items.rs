//! FETCH data items (RFC 3501 §6.4.5, RFC 7162 MODSEQ, RFC 3516 BINARY) and their parser:
//! macros (`ALL`, `FAST`, `FULL`), simple items, `BODY[section]<partial>` with `BODY.PEEK`
//! and the `RFC822.*` aliases, and `BINARY[part]<partial>`, `BINARY.PEEK`, `BINARY.SIZE`.
//! Partial ranges are 64-bit (IMAP4rev2). Sans-I/O; rendering lives in module `fetch`.

use super::parser::{err, Lexer, PResult};

/// The text part of a section specifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    HeaderFields { not: bool, fields: Vec<String> },
    Text,
    Mime,
}

/// `BODY[<part>.<text>]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    /// Part numbers (`1.2` is `[1, 2]`); empty for the whole message.
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

impl Section {
    /// The section as it is echoed in the response (`1.HEADER.FIELDS (FROM TO)`).
    pub fn spec(&self) -> String {
        let mut s: Vec<String> = self.part.iter().map(u32::to_string).collect();
        match &self.text {
            None => {}
            Some(SectionText::Header) => s.push("HEADER".into()),
            Some(SectionText::Text) => s.push("TEXT".into()),
            Some(SectionText::Mime) => s.push("MIME".into()),
            Some(SectionText::HeaderFields { not, fields }) => s.push(format!(
                "HEADER.FIELDS{} ({})",
                if *not { ".NOT" } else { "" },
                fields.join(" ")
            )),
        }
        s.join(".")
    }
}

/// How a body section is named in the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLabel {
    /// `BODY[...]`
    Body,
    Rfc822,
    Rfc822Header,
    Rfc822Text,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAtt {
    Flags,
    Uid,
    InternalDate,
    Size,
    Envelope,
    /// `BODYSTRUCTURE` (extensible).
    BodyStructure,
    /// `BODY` without a section: the non-extensible structure.
    BodyBasic,
    Modseq,
    Section {
        section: Section,
        /// `<origin.count>`.
        partial: Option<(u64, u64)>,
        /// Fetching it does not set `\Seen`.
        peek: bool,
        label: BodyLabel,
    },
    /// `BINARY[part]<partial>`: the part with its content transfer encoding undone.
    Binary {
        /// Part numbers; empty for the whole message (which has no encoding of its own).
        part: Vec<u32>,
        partial: Option<(u64, u64)>,
        peek: bool,
    },
    /// `BINARY.SIZE[part]`: the decoded size.
    BinarySize {
        part: Vec<u32>,
    },
}

impl FetchAtt {
    /// Whether this item needs the message's bytes.
    pub fn needs_content(&self) -> bool {
        matches!(
            self,
            FetchAtt::Envelope
                | FetchAtt::BodyStructure
                | FetchAtt::BodyBasic
                | FetchAtt::Section { .. }
                | FetchAtt::Binary { .. }
                | FetchAtt::BinarySize { .. }
        )
    }

    /// Whether the message's header is all this item needs: ENVELOPE, and `BODY[HEADER]`,
    /// `BODY[HEADER.FIELDS[.NOT] (…)]` (and RFC822.HEADER) of the whole message.
    pub fn needs_only_header(&self) -> bool {
        match self {
            FetchAtt::Envelope => true,
            FetchAtt::Section { section, .. } => {
                section.part.is_empty()
                    && matches!(
                        section.text,
                        Some(SectionText::Header | SectionText::HeaderFields { .. })
                    )
            }
            _ => false,
        }
    }

    /// Whether fetching it sets `\Seen`.
    pub fn sets_seen(&self) -> bool {
        matches!(
            self,
            FetchAtt::Section { peek: false, .. } | FetchAtt::Binary { peek: false, .. }
        )
    }
}

/// Parses the FETCH item list: one item, a macro, or a parenthesised list.
pub fn parse_fetch_items(l: &mut Lexer) -> PResult<Vec<FetchAtt>> {
    if l.peek() == Some(b'(') {
        l.list(false, item)
    } else if l.keyword("ALL") {
        Ok(vec![
            FetchAtt::Flags,
            FetchAtt::InternalDate,
            FetchAtt::Size,
            FetchAtt::Envelope,
        ])
    } else if l.keyword("FAST") {
        Ok(vec![
            FetchAtt::Flags,
            FetchAtt::InternalDate,
            FetchAtt::Size,
        ])
    } else if l.keyword("FULL") {
        Ok(vec![
            FetchAtt::Flags,
            FetchAtt::InternalDate,
            FetchAtt::Size,
            FetchAtt::Envelope,
            FetchAtt::BodyBasic,
        ])
    } else {
        Ok(vec![item(l)?])
    }
}

fn item(l: &mut Lexer) -> PResult<FetchAtt> {
    // `BODY[` and `BODY.PEEK[` contain characters outside atoms: take the name by hand.
    let rest = l.rest();
    let name_len = rest
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'.'))
        .unwrap_or(rest.len());
    let name = String::from_utf8_lossy(&rest[..name_len]).to_ascii_uppercase();
    l.advance(name_len);
    let section = |label, peek, text| FetchAtt::Section {
        section: Section { part: vec![], text },
        partial: None,
        peek,
        label,
    };
    Ok(match name.as_str() {
        "FLAGS" => FetchAtt::Flags,
        "UID" => FetchAtt::Uid,
        "INTERNALDATE" => FetchAtt::InternalDate,
        "RFC822.SIZE" => FetchAtt::Size,
        "ENVELOPE" => FetchAtt::Envelope,
        "BODYSTRUCTURE" => FetchAtt::BodyStructure,
        "MODSEQ" => FetchAtt::Modseq,
        "RFC822" => section(BodyLabel::Rfc822, false, None),
        "RFC822.HEADER" => section(BodyLabel::Rfc822Header, true, Some(SectionText::Header)),
        "RFC822.TEXT" => section(BodyLabel::Rfc822Text, false, Some(SectionText::Text)),
        "BODY" if l.peek() != Some(b'[') => FetchAtt::BodyBasic,
        "BODY" | "BODY.PEEK" => {
            let peek = name == "BODY.PEEK";
            l.expect(b'[', "expected '['")?;
            let section = section_spec(l)?;
            l.expect(b']', "expected ']'")?;
            FetchAtt::Section {
                section,
                partial: partial(l)?,
                peek,
                label: BodyLabel::Body,
            }
        }
        "BINARY" | "BINARY.PEEK" | "BINARY.SIZE" => {
            l.expect(b'[', "expected '['")?;
            let part = part_numbers(l)?;
            l.expect(b']', "expected ']'")?;
            if name == "BINARY.SIZE" {
                FetchAtt::BinarySize { part }
            } else {
                FetchAtt::Binary {
                    part,
                    partial: partial(l)?,
                    peek: name == "BINARY.PEEK",
                }
            }
        }
        "" => return err("expected a FETCH item"),
        _ => return err("unknown FETCH item"),
    })
}

/// `<origin.count>` after a section, if present.
fn partial(l: &mut Lexer) -> PResult<Option<(u64, u64)>> {
    if !l.eat(b'<') {
        return Ok(None);
    }
    let origin = l.number64()?;
    l.expect(b'.', "expected '.' in a partial range")?;
    let count = l.number64()?;
    if count == 0 {
        return err("a partial range needs a positive length");
    }
    l.expect(b'>', "expected '>'")?;
    Ok(Some((origin, count)))
}

/// `section-binary`: part numbers only (`1.2`), possibly none.
fn part_numbers(l: &mut Lexer) -> PResult<Vec<u32>> {
    let mut part = Vec::new();
    if l.peek() == Some(b']') {
        return Ok(part);
    }
    loop {
        let n = l.number()?;
        if n == 0 || part.len() >= 64 {
            return err("invalid section part number");
        }
        part.push(n);
        if !l.eat(b'.') {
            return Ok(part);
        }
    }
}

fn section_spec(l: &mut Lexer) -> PResult<Section> {
    let mut s = Section::default();
    if l.peek() == Some(b']') {
        return Ok(s);
    }
    loop {
        if l.peek().is_some_and(|b| b.is_ascii_digit()) {
            let n = l.number()?;
            if n == 0 || s.part.len() >= 64 {
                return err("invalid section part number");
            }
            s.part.push(n);
            if l.eat(b'.') {
                continue;
            }
            return Ok(s);
        }
        break;
    }
    let word = {
        let rest = l.rest();
        let n = rest
            .iter()
            .position(|&b| !(b.is_ascii_alphabetic() || b == b'.'))
            .unwrap_or(rest.len());
        let w = String::from_utf8_lossy(&rest[..n]).to_ascii_uppercase();
        l.advance(n);
        w
    };
    s.text = Some(match word.as_str() {
        "HEADER" => SectionText::Header,
        "TEXT" => SectionText::Text,
        "MIME" if !s.part.is_empty() => SectionText::Mime,
        "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
            l.sp()?;
            let fields = l.list(false, |l| {
                let f = l.astring()?;
                if f.is_empty() || !f.iter().all(|&b| (0x21..0x7f).contains(&b) && b != b':') {
                    return err("invalid header field name");
                }
                Ok(String::from_utf8_lossy(&f).to_ascii_uppercase())
            })?;
            SectionText::HeaderFields {
                not: word.ends_with(".NOT"),
                fields,
            }
        }
        _ => return err("invalid section"),
    });
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> PResult<Vec<FetchAtt>> {
        let mut l = Lexer::new(s.as_bytes(), 8);
        let r = parse_fetch_items(&mut l)?;
        l.end()?;
        Ok(r)
    }

    #[test]
    fn items_table() {
        assert_eq!(parse("FAST").unwrap().len(), 3);
        assert_eq!(
            parse("(UID FLAGS)").unwrap(),
            vec![FetchAtt::Uid, FetchAtt::Flags]
        );
        assert_eq!(parse("body").unwrap(), vec![FetchAtt::BodyBasic]);
        let got = parse("(BODY.PEEK[1.2.HEADER.FIELDS (From \"To\")]<0.100> RFC822.SIZE)").unwrap();
        assert_eq!(
            got[0],
            FetchAtt::Section {
                section: Section {
                    part: vec![1, 2],
                    text: Some(SectionText::HeaderFields {
                        not: false,
                        fields: vec!["FROM".into(), "TO".into()]
                    })
                },
                partial: Some((0, 100)),
                peek: true,
                label: BodyLabel::Body
            }
        );
        let FetchAtt::Section { section, .. } = &got[0] else {
            panic!()
        };
        assert_eq!(section.spec(), "1.2.HEADER.FIELDS (FROM TO)");
        assert!(matches!(
            &parse("BODY[]").unwrap()[0],
            FetchAtt::Section { peek: false, .. }
        ));
        assert!(matches!(
            &parse("BODY[3.MIME]").unwrap()[0],
            FetchAtt::Section { .. }
        ));
        assert_eq!(
            parse("(BINARY.PEEK[1.2]<5.4294967296> BINARY[] BINARY.SIZE[3])").unwrap(),
            vec![
                FetchAtt::Binary {
                    part: vec![1, 2],
                    partial: Some((5, 4_294_967_296)),
                    peek: true
                },
                FetchAtt::Binary {
                    part: vec![],
                    partial: None,
                    peek: false
                },
                FetchAtt::BinarySize { part: vec![3] },
            ]
        );
        assert!(parse("BINARY[1]").unwrap()[0].sets_seen());
        assert!(!parse("BINARY.SIZE[1]").unwrap()[0].sets_seen());
        for bad in [
            "",
            "()",
            "FOO",
            "BODY[MIME]",
            "BODY[0]",
            "BODY[1",
            "BODY[]<5>",
            "BODY[]<1.0>",
            "BODY[HEADER.FIELDS ()]",
            "(FLAGS",
            "BINARY[1.HEADER]",
            "BINARY[TEXT]",
            "BINARY.SIZE[1]<0.5>",
            "BINARY[0]",
            "BINARY",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
