//! Files `mailctl` sends to the server: scripts, policy settings and maps.

use std::io::Read;
use std::path::Path;

use super::CtlError;

/// A UTF-8 text file of at most `max` bytes, or standard input for `-`. Errors are usage
/// errors that name the file and what it should have held.
pub(crate) fn read_text(path: &Path, what: &str, max: u64) -> Result<String, CtlError> {
    let stdin = path == Path::new("-");
    let mut bytes = Vec::new();
    let read = if stdin {
        std::io::stdin()
            .lock()
            .take(max + 1)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
    };
    let name = if stdin {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    };
    read.map_err(|e| CtlError::usage(format!("cannot read the {what} from {name}: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(CtlError::usage(format!(
            "the {what} in {name} is larger than {max} bytes"
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| CtlError::usage(format!("the {what} in {name} is not UTF-8 text")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "keep;\n").unwrap();
        assert_eq!(read_text(&p, "script", 100).unwrap(), "keep;\n");
        let e = read_text(&p, "script", 3).unwrap_err().to_string();
        assert!(e.contains("larger than 3 bytes") && e.contains("/s"), "{e}");
        std::fs::write(&p, [0xff, 0xfe]).unwrap();
        let e = read_text(&p, "map x", 100).unwrap_err().to_string();
        assert!(e.contains("map x") && e.contains("not UTF-8"), "{e}");
        let e = read_text(&dir.path().join("none"), "script", 100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read the script from"), "{e}");
    }
}
