//! SASL for SMTP AUTH (RFC 4954): decoding client responses and the PLAIN (RFC 4616) and
//! LOGIN mechanisms' messages.
//!
//! Sans-I/O: bytes in, credentials or a typed error out. It never checks a password and never
//! logs one; the session passes the credentials straight to the policy.
//!
//! Security note: only identities equal to the authentication identity are accepted
//! (no proxy authorisation), so one account cannot act as another.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Why a SASL exchange stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The client sent `*` (`501 5.7.0`).
    #[error("authentication cancelled")]
    Cancelled,
    /// Not base64 (`501 5.5.2`).
    #[error("invalid base64 in authentication exchange")]
    BadBase64,
    /// Decoded, but not a valid message of the mechanism (`501 5.5.2`).
    #[error("malformed authentication message")]
    Malformed,
}

/// Decodes one client response line (without CRLF): `*` cancels, `=` is an empty initial
/// response (RFC 4954 §4), anything else is base64.
pub fn decode_response(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    match line.trim_ascii() {
        b"*" => Err(SaslError::Cancelled),
        b"=" => Ok(Vec::new()),
        text => STANDARD.decode(text).map_err(|_| SaslError::BadBase64),
    }
}

/// Splits a PLAIN message `authzid NUL authcid NUL passwd` into user and password. An
/// authorisation identity other than the user's own is refused as malformed.
pub fn decode_plain(msg: &[u8]) -> Result<(String, String), SaslError> {
    let mut parts = msg.split(|&b| b == 0);
    let (Some(authz), Some(user), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    let user = utf8(user)?;
    let authz = utf8(authz)?;
    if user.is_empty() || !(authz.is_empty() || authz.eq_ignore_ascii_case(&user)) {
        return Err(SaslError::Malformed);
    }
    Ok((user, utf8(pass)?))
}

/// A LOGIN username or password.
pub fn decode_text(msg: &[u8]) -> Result<String, SaslError> {
    utf8(msg)
}

fn utf8(b: &[u8]) -> Result<String, SaslError> {
    String::from_utf8(b.to_vec()).map_err(|_| SaslError::Malformed)
}

/// The LOGIN mechanism's challenges, base64: "Username:" and "Password:".
pub const LOGIN_USERNAME: &str = "VXNlcm5hbWU6";
/// See [`LOGIN_USERNAME`].
pub const LOGIN_PASSWORD: &str = "UGFzc3dvcmQ6";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses() {
        assert_eq!(decode_response(b"*"), Err(SaslError::Cancelled));
        assert_eq!(decode_response(b"="), Ok(vec![]));
        assert_eq!(decode_response(b"YWJj"), Ok(b"abc".to_vec()));
        assert_eq!(decode_response(b"YWJj "), Ok(b"abc".to_vec()));
        assert_eq!(decode_response(b"!!"), Err(SaslError::BadBase64));
        assert_eq!(STANDARD.decode(LOGIN_USERNAME).unwrap(), b"Username:");
        assert_eq!(STANDARD.decode(LOGIN_PASSWORD).unwrap(), b"Password:");
    }

    #[test]
    fn plain() {
        type Credentials = Result<(String, String), SaslError>;
        let ok = |u: &str, p: &str| Ok((u.to_string(), p.to_string()));
        let cases: Vec<(&[u8], Credentials)> = vec![
            (b"\0alice@x.org\0secret", ok("alice@x.org", "secret")),
            (
                b"alice@x.org\0alice@x.org\0secret",
                ok("alice@x.org", "secret"),
            ),
            (
                b"ALICE@x.org\0alice@x.org\0p\xc3\xa9",
                ok("alice@x.org", "pé"),
            ),
            (b"\0alice@x.org\0", ok("alice@x.org", "")),
            (b"bob@x.org\0alice@x.org\0secret", Err(SaslError::Malformed)),
            (b"\0\0secret", Err(SaslError::Malformed)),
            (b"alice@x.org\0secret", Err(SaslError::Malformed)),
            (b"\0a\0b\0c", Err(SaslError::Malformed)),
            (b"\0a\xff\0b", Err(SaslError::Malformed)),
        ];
        for (msg, want) in cases {
            assert_eq!(decode_plain(msg), want, "{msg:?}");
        }
    }
}
