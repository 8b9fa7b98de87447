//! The shared mailstore volume: mount it for an epoch, prove the epoch in its owner record,
//! unmount it.
//!
//! `mount` refuses when the mount point is already a mount point (someone — perhaps this node
//! before a crash — still has it; the failover task unmounts at start, so this means a second
//! owner) and, after mounting, when the volume's owner record names a newer epoch than ours
//! (a node that held the lease after us wrote it: we are the stale one). Then it writes our
//! epoch into the owner record, durably, before anything is served. `unmount` tries a normal
//! unmount, then a lazy one (`MNT_DETACH`) so a busy file system never keeps a fenced node
//! attached to the volume's namespace.
//!
//! Without a device (a directory shared by other means, or a test), nothing is mounted and
//! only the owner record is checked and written.
//!
//! Security note: the device, file system type and options come from the node's config file
//! only; the owner record is parsed with bounded size and never trusted beyond its epoch.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The owner record's file name at the volume root.
pub const OWNER_FILE: &str = "MAILSTORE.owner";

/// The `[failover.volume]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeConfig {
    /// The block device (e.g. `/dev/disk/by-id/…`); absent: no mount, the store root is shared
    /// by other means.
    pub device: Option<PathBuf>,
    /// File system type.
    #[serde(default = "d_fstype")]
    pub fstype: String,
    /// Mount options (comma-separated, as for mount(8)'s `-o`).
    #[serde(default)]
    pub options: String,
}

fn d_fstype() -> String {
    "xfs".into()
}

impl Default for VolumeConfig {
    fn default() -> Self {
        VolumeConfig {
            device: None,
            fstype: d_fstype(),
            options: String::new(),
        }
    }
}

/// Why the volume could not be taken or released. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{point} is already a mount point on this node: another mount of the mailstore? check `findmnt {point}`; mailnode unmounts it at start")]
    AlreadyMounted { point: String },
    #[error("cannot mount {device} on {point} ({fstype}): {reason}; check the device exists and holds a file system (`blkid {device}`, `xfs_repair -n {device}`)")]
    Mount {
        device: String,
        point: String,
        fstype: String,
        reason: String,
    },
    #[error("the volume's owner record names epoch {found} (node {node}), newer than ours ({ours}): another node held the mailstore after us; not serving")]
    NewerOwner { found: u64, node: u64, ours: u64 },
    #[error("cannot write the owner record {path}: {reason}; is the volume full or read-only?")]
    OwnerRecord { path: String, reason: String },
    #[error("cannot unmount {point}: {reason}")]
    Unmount { point: String, reason: String },
}

/// The volume's owner record: who mounted it last, at which epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRecord {
    pub epoch: u64,
    pub node: u64,
    pub name: String,
    /// Unix seconds.
    pub at: u64,
}

/// The volume of one mailstore.
#[derive(Debug, Clone)]
pub struct Volume {
    pub config: VolumeConfig,
    /// The mount point (the store root).
    pub point: PathBuf,
}

/// Whether `point` is a mount point, from `/proc/self/mountinfo` (field 5).
pub fn is_mount_point(point: &Path) -> bool {
    let Ok(canon) = point.canonicalize() else {
        return false;
    };
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(&unescape_mountinfo(m)) == canon)
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0')))
            .and_then(|n| u8::try_from(n).ok());
        if let Some(n) = octal {
            out.push(n);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Volume {
    /// Mounts (when a device is configured) and claims the volume for `epoch`. Blocking.
    pub fn take(&self, epoch: u64, node: u64, name: &str) -> Result<(), VolumeError> {
        if let Some(device) = &self.config.device {
            if is_mount_point(&self.point) {
                return Err(VolumeError::AlreadyMounted {
                    point: self.point.display().to_string(),
                });
            }
            let opts = (!self.config.options.is_empty()).then_some(self.config.options.as_str());
            nix::mount::mount(
                Some(device.as_path()),
                &self.point,
                Some(self.config.fstype.as_str()),
                nix::mount::MsFlags::MS_NOATIME,
                opts,
            )
            .map_err(|e| VolumeError::Mount {
                device: device.display().to_string(),
                point: self.point.display().to_string(),
                fstype: self.config.fstype.clone(),
                reason: e.desc().to_string(),
            })?;
        }
        let res = self.claim(epoch, node, name);
        if res.is_err() {
            let _ = self.release();
        }
        res
    }

    fn claim(&self, epoch: u64, node: u64, name: &str) -> Result<(), VolumeError> {
        let path = self.point.join(OWNER_FILE);
        if self.config.device.is_none() {
            // A shared directory (no device): create it like the store's `create_if_missing`
            // would; the store still refuses a root without its marker unless told to create.
            fs::create_dir_all(&self.point).map_err(|e| VolumeError::OwnerRecord {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        if let Some(found) = read_owner(&path) {
            if found.epoch > epoch {
                return Err(VolumeError::NewerOwner {
                    found: found.epoch,
                    node: found.node,
                    ours: epoch,
                });
            }
        }
        let record = OwnerRecord {
            epoch,
            node,
            name: name.to_string(),
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        write_owner(&path, &record).map_err(|e| VolumeError::OwnerRecord {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Unmounts when a device is configured and it is mounted here: normally, else lazily.
    /// Blocking.
    pub fn release(&self) -> Result<(), VolumeError> {
        if self.config.device.is_none() || !is_mount_point(&self.point) {
            return Ok(());
        }
        match nix::mount::umount(&self.point) {
            Ok(()) => Ok(()),
            Err(first) => {
                tracing::warn!(point = %self.point.display(), error = %first, "volume busy; unmounting lazily");
                nix::mount::umount2(&self.point, nix::mount::MntFlags::MNT_DETACH).map_err(|e| {
                    VolumeError::Unmount {
                        point: self.point.display().to_string(),
                        reason: format!("{first}; lazy unmount: {e}"),
                    }
                })
            }
        }
    }
}

/// The owner record, if present and readable (a damaged one is treated as absent).
pub fn read_owner(path: &Path) -> Option<OwnerRecord> {
    let meta = fs::metadata(path).ok()?;
    if meta.len() > 4096 {
        return None;
    }
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

fn write_owner(path: &Path, record: &OwnerRecord) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_record_refuses_an_older_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let v = Volume {
            config: VolumeConfig::default(),
            point: dir.path().to_path_buf(),
        };
        v.take(3, 1, "n1").unwrap();
        let rec = read_owner(&dir.path().join(OWNER_FILE)).unwrap();
        assert_eq!((rec.epoch, rec.node), (3, 1));
        v.take(4, 2, "n2").unwrap();
        let err = v.take(3, 1, "n1").unwrap_err();
        assert!(
            matches!(
                err,
                VolumeError::NewerOwner {
                    found: 4,
                    node: 2,
                    ours: 3
                }
            ),
            "{err}"
        );
        // A damaged record is rewritten by the next holder.
        fs::write(dir.path().join(OWNER_FILE), b"garbage").unwrap();
        v.take(5, 3, "n3").unwrap();
        assert_eq!(read_owner(&dir.path().join(OWNER_FILE)).unwrap().epoch, 5);
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_mountinfo("/srv/mail\\040store"), "/srv/mail store");
        assert_eq!(unescape_mountinfo("/a\\"), "/a\\");
        assert_eq!(unescape_mountinfo("/a\\999\\777"), "/a\\999\\777");
        assert!(is_mount_point(Path::new("/")));
        assert!(!is_mount_point(Path::new("/nonexistent/x")));
    }
}
