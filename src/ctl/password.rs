//! Where passwords come from: a terminal prompt, the first line of a file, or the first line of
//! standard input — never a command-line argument, which `ps` and shell history would keep.
//!
//! Only the line ending is stripped (`\n` or `\r\n`): leading and trailing spaces may be part of
//! a password. An empty password is refused here; the server applies the real policy.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use super::args::PasswordArgs;
use super::CtlError;

/// Where to read one password from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The first line of this file.
    File(PathBuf),
    /// The first line of standard input.
    Stdin,
    /// Ask on the terminal.
    Prompt,
}

impl From<&PasswordArgs> for Source {
    fn from(args: &PasswordArgs) -> Source {
        match (&args.password_file, args.password_stdin) {
            (Some(file), _) => Source::File(file.clone()),
            (None, true) => Source::Stdin,
            (None, false) => Source::Prompt,
        }
    }
}

/// Whether a prompt asks once (checking a password) or twice (setting one, so a typo does not
/// lock the user out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// Ask once.
    Once,
    /// Ask twice and require both to match.
    Twice,
}

/// Reads one password. `prompt` is shown on the terminal, e.g. `New password for a@x.org: `.
pub fn read(source: &Source, prompt: &str, confirm: Confirm) -> Result<String, CtlError> {
    match source {
        Source::File(path) => from_file(path),
        Source::Stdin => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).map_err(|e| {
                CtlError::usage(format!("cannot read the password from standard input: {e}"))
            })?;
            non_empty(first_line(&line), "standard input")
        }
        Source::Prompt => {
            let ask = |p: &str| {
                rpassword::prompt_password(p).map_err(|e| CtlError::Usage {
                    message: format!("cannot prompt for the password: {e}"),
                    hint: Some(
                        "without a terminal, use --password-file FILE or --password-stdin".into(),
                    ),
                })
            };
            let first = non_empty(ask(prompt)?.as_str(), "the prompt")?;
            if confirm == Confirm::Twice && ask("Retype the password: ")? != first {
                return Err(CtlError::usage(
                    "the two passwords do not match; nothing was changed",
                ));
            }
            Ok(first)
        }
    }
}

/// The password in a file: its first line, without the line ending.
pub fn from_file(path: &Path) -> Result<String, CtlError> {
    let text = std::fs::read_to_string(path).map_err(|e| CtlError::Usage {
        message: format!("cannot read the password file {}: {e}", path.display()),
        hint: Some(
            "the file must be readable and hold the password, in UTF-8, on its first line".into(),
        ),
    })?;
    non_empty(first_line(&text), &path.display().to_string())
}

/// The first line of `text`, without `\n` or `\r\n`.
pub fn first_line(text: &str) -> &str {
    let line = text.split('\n').next().unwrap_or("");
    line.strip_suffix('\r').unwrap_or(line)
}

fn non_empty(password: &str, source: &str) -> Result<String, CtlError> {
    if password.is_empty() {
        return Err(CtlError::usage(format!(
            "no password in {source}: the password must be on the first line"
        )));
    }
    Ok(password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }

    #[test]
    fn the_first_line_without_its_ending_is_the_password() {
        for (content, expected) in [
            ("secret\n", "secret"),
            ("secret", "secret"),
            ("secret\r\n", "secret"),
            (" spaced \n", " spaced "),
            ("first\nsecond\n", "first"),
        ] {
            let (_dir, path) = file_with(content);
            assert_eq!(from_file(&path).unwrap(), expected, "{content:?}");
        }
    }

    #[test]
    fn empty_or_missing_files_are_usage_errors() {
        for content in ["", "\n", "\r\n", "\nsecond line\n"] {
            let (_dir, path) = file_with(content);
            let err = from_file(&path).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{content:?}");
        }
        let err = from_file(Path::new("/nonexistent/pw")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("/nonexistent/pw"));
    }

    #[test]
    fn sources_follow_the_flags() {
        let mut args = PasswordArgs::default();
        assert_eq!(Source::from(&args), Source::Prompt);
        args.password_stdin = true;
        assert_eq!(Source::from(&args), Source::Stdin);
        args.password_file = Some("f".into());
        assert_eq!(Source::from(&args), Source::File("f".into()));
    }
}
