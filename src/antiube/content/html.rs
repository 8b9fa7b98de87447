//! HTML to text for the scoring rules, and URI extraction from text.
//!
//! [`to_text`] drops tags, comments, `<script>` and `<style>` contents, decodes the common
//! character references (and drops the invisible ones spammers put inside words, such as
//! `&shy;`), collapses blanks to one space, and collects `href`/`src` attribute values that are
//! URIs. Inline tags vanish without a trace (`vi<b></b>agra` reads `viagra`, as a reader sees
//! it); block tags become a space.
//!
//! Never: build a DOM or recurse — one linear pass over the bytes whatever the nesting.

/// Tags that separate words when rendered.
const BLOCK_TAGS: &[&[u8]] = &[
    b"br",
    b"p",
    b"div",
    b"tr",
    b"td",
    b"th",
    b"li",
    b"ul",
    b"ol",
    b"table",
    b"h1",
    b"h2",
    b"h3",
    b"h4",
    b"h5",
    b"h6",
    b"hr",
    b"blockquote",
    b"title",
    b"body",
    b"head",
    b"html",
    b"section",
    b"article",
    b"header",
    b"footer",
    b"dd",
    b"dt",
    b"pre",
    b"center",
];

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0c')
}

/// The text of `html` into `out` (cleared first) and the URIs of its `href` and `src`
/// attributes into `uris` (appended). `html` is UTF-8; so is `out`.
pub(super) fn to_text(html: &[u8], out: &mut Vec<u8>, uris: &mut Vec<String>) {
    out.clear();
    out.reserve(html.len());
    let mut space = true;
    let mut i = 0;
    while let Some(&b) = html.get(i) {
        match b {
            b'<' => {
                let next = html.get(i + 1).copied().unwrap_or(b' ');
                if html[i + 1..].starts_with(b"!--") {
                    i = memchr::memmem::find(html.get(i + 4..).unwrap_or_default(), b"-->")
                        .map_or(html.len(), |e| i + 4 + e + 3);
                } else if next.is_ascii_alphabetic() || matches!(next, b'/' | b'!' | b'?') {
                    let tag = tag(html, i, uris);
                    if BLOCK_TAGS.iter().any(|t| tag.name.eq_ignore_ascii_case(t)) && !space {
                        out.push(b' ');
                        space = true;
                    }
                    i = tag.end;
                    if !tag.closing
                        && (tag.name.eq_ignore_ascii_case(b"script")
                            || tag.name.eq_ignore_ascii_case(b"style"))
                    {
                        i = closing_tag(html, i, tag.name);
                    }
                } else {
                    out.push(b'<');
                    space = false;
                    i += 1;
                }
            }
            b'&' => {
                let (consumed, decoded) = entity(&html[i..]);
                match decoded {
                    Entity::Char(' ') | Entity::Char('\u{a0}') => {
                        if !space {
                            out.push(b' ');
                            space = true;
                        }
                    }
                    Entity::Char(c) => {
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        space = false;
                    }
                    Entity::Invisible => {}
                    Entity::None => {
                        out.push(b'&');
                        space = false;
                    }
                }
                i += consumed;
            }
            _ if is_blank(b) => {
                if !space {
                    out.push(b' ');
                    space = true;
                }
                i += 1;
            }
            _ => {
                out.push(b);
                space = false;
                i += 1;
            }
        }
    }
}

/// A parsed tag: where it ends (after `>`), its name, whether it is `</…>`.
struct Tag<'a> {
    end: usize,
    name: &'a [u8],
    closing: bool,
}

/// Parses the tag at `start` (`<`), pushing `href`/`src` URIs. Quoted attribute values may
/// hold `>`; an unterminated quote runs to the end, as in browsers.
fn tag<'a>(html: &'a [u8], start: usize, uris: &mut Vec<String>) -> Tag<'a> {
    let len = html.len();
    let mut j = start + 1;
    let closing = html.get(j) == Some(&b'/');
    if closing {
        j += 1;
    }
    let name_start = j;
    while j < len && (html[j].is_ascii_alphanumeric() || matches!(html[j], b'-' | b':')) {
        j += 1;
    }
    let name = &html[name_start..j];
    loop {
        while j < len && (is_blank(html[j]) || html[j] == b'/') {
            j += 1;
        }
        match html.get(j) {
            None => {
                return Tag {
                    end: len,
                    name,
                    closing,
                }
            }
            Some(b'>') => {
                return Tag {
                    end: j + 1,
                    name,
                    closing,
                }
            }
            Some(_) => {}
        }
        let attr_start = j;
        while j < len && !is_blank(html[j]) && !matches!(html[j], b'=' | b'>' | b'/') {
            j += 1;
        }
        let attr = &html[attr_start..j];
        if attr.is_empty() {
            // A lone `=`: step over it.
            j += 1;
            continue;
        }
        while j < len && is_blank(html[j]) {
            j += 1;
        }
        if html.get(j) != Some(&b'=') {
            continue;
        }
        j += 1;
        while j < len && is_blank(html[j]) {
            j += 1;
        }
        let value = match html.get(j) {
            Some(&q @ (b'"' | b'\'')) => {
                let v0 = j + 1;
                let v1 = memchr::memchr(q, &html[v0..]).map_or(len, |e| v0 + e);
                j = (v1 + 1).min(len);
                &html[v0..v1]
            }
            _ => {
                let v0 = j;
                while j < len && !is_blank(html[j]) && html[j] != b'>' {
                    j += 1;
                }
                &html[v0..j]
            }
        };
        if attr.eq_ignore_ascii_case(b"href") || attr.eq_ignore_ascii_case(b"src") {
            let value = decode_entities(value);
            let value = value.trim();
            if is_uri_start(value.as_bytes()) {
                uris.push(value.to_string());
            }
        }
    }
}

/// Where `</name` starts at or after `from` (ignoring case), or the end.
fn closing_tag(html: &[u8], from: usize, name: &[u8]) -> usize {
    let mut at = from;
    while let Some(p) = memchr::memchr(b'<', html.get(at..).unwrap_or_default()) {
        let p = at + p;
        let rest = &html[p + 1..];
        if rest.first() == Some(&b'/')
            && rest
                .get(1..1 + name.len())
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        {
            return p;
        }
        at = p + 1;
    }
    html.len()
}

/// What a character reference stands for.
enum Entity {
    /// A character.
    Char(char),
    /// A character a reader does not see (soft hyphen, zero-width characters).
    Invisible,
    /// Not a reference this decoder knows: the `&` is literal.
    None,
}

fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2060}' | '\u{feff}'
    )
}

/// The reference at the start of `s` (which starts with `&`): bytes consumed and meaning.
fn entity(s: &[u8]) -> (usize, Entity) {
    let window = &s[..s.len().min(12)];
    let Some(semi) = memchr::memchr(b';', window) else {
        return (1, Entity::None);
    };
    let name = &s[1..semi];
    let c = if let Some(num) = name.strip_prefix(b"#") {
        let (digits, radix) = match num {
            [b'x' | b'X', hex @ ..] => (hex, 16),
            _ => (num, 10),
        };
        std::str::from_utf8(digits)
            .ok()
            .filter(|d| !d.is_empty())
            .and_then(|d| u32::from_str_radix(d, radix).ok())
            .map(|n| char::from_u32(n).unwrap_or(char::REPLACEMENT_CHARACTER))
    } else {
        named(name)
    };
    match c {
        Some(c) if is_invisible(c) => (semi + 1, Entity::Invisible),
        Some(c) => (semi + 1, Entity::Char(c)),
        None => (1, Entity::None),
    }
}

/// The named references mail uses in practice.
fn named(name: &[u8]) -> Option<char> {
    Some(match name {
        b"amp" | b"AMP" => '&',
        b"lt" | b"LT" => '<',
        b"gt" | b"GT" => '>',
        b"quot" | b"QUOT" => '"',
        b"apos" => '\'',
        b"nbsp" => '\u{a0}',
        b"shy" => '\u{ad}',
        b"zwnj" => '\u{200c}',
        b"zwj" => '\u{200d}',
        b"copy" => '©',
        b"reg" => '®',
        b"trade" => '™',
        b"euro" => '€',
        b"pound" => '£',
        b"yen" => '¥',
        b"cent" => '¢',
        b"hellip" => '…',
        b"mdash" => '—',
        b"ndash" => '–',
        b"lsquo" => '‘',
        b"rsquo" => '’',
        b"ldquo" => '“',
        b"rdquo" => '”',
        b"laquo" => '«',
        b"raquo" => '»',
        b"bull" => '•',
        b"middot" => '·',
        b"deg" => '°',
        b"times" => '×',
        b"eacute" => 'é',
        b"egrave" => 'è',
        b"agrave" => 'à',
        b"auml" => 'ä',
        b"ouml" => 'ö',
        b"uuml" => 'ü',
        b"Auml" => 'Ä',
        b"Ouml" => 'Ö',
        b"Uuml" => 'Ü',
        b"szlig" => 'ß',
        b"ccedil" => 'ç',
        b"ntilde" => 'ñ',
        _ => return None,
    })
}

/// `s` with its character references decoded (attribute values).
fn decode_entities(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'&', &s[i..]) {
        out.extend_from_slice(&s[i..i + p]);
        let (consumed, e) = entity(&s[i + p..]);
        match e {
            Entity::Char(c) => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            Entity::Invisible => {}
            Entity::None => out.push(b'&'),
        }
        i += p + consumed;
    }
    out.extend_from_slice(&s[i..]);
    super::mime::into_string(out)
}

/// Whether `s` starts like a URI the rules look at: `http://`, `https://`, `ftp://` or `www.`.
pub(super) fn is_uri_start(s: &[u8]) -> bool {
    let starts = |p: &[u8]| s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    starts(b"http://")
        || starts(b"https://")
        || starts(b"ftp://")
        || (starts(b"www.") && s.len() > 4)
}

/// A URI found in text without the punctuation that usually follows one in prose.
pub(super) fn trim_uri(s: &[u8]) -> &[u8] {
    let end = s
        .iter()
        .rposition(|b| !b".,;:!?)]}'\"*".contains(b))
        .map_or(0, |e| e + 1);
    &s[..end]
}
