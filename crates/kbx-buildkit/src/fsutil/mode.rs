//! Go `os.FileMode` bits, which fsutil puts on the wire instead of POSIX `st_mode`.

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// `os.ModeDir`.
pub(crate) const MODE_DIR: u32 = 1 << 31;
/// `os.ModeSymlink`.
pub(crate) const MODE_SYMLINK: u32 = 1 << 27;
/// `os.ModeDevice`.
pub(crate) const MODE_DEVICE: u32 = 1 << 26;
/// `os.ModeNamedPipe`.
pub(crate) const MODE_NAMED_PIPE: u32 = 1 << 25;
/// `os.ModeSocket`.
pub(crate) const MODE_SOCKET: u32 = 1 << 24;
/// `os.ModeSetuid`.
pub(crate) const MODE_SETUID: u32 = 1 << 23;
/// `os.ModeSetgid`.
pub(crate) const MODE_SETGID: u32 = 1 << 22;
/// `os.ModeCharDevice`.
pub(crate) const MODE_CHAR_DEVICE: u32 = 1 << 21;
/// `os.ModeSticky`.
pub(crate) const MODE_STICKY: u32 = 1 << 20;
/// `os.ModeIrregular`.
pub(crate) const MODE_IRREGULAR: u32 = 1 << 19;
/// `os.ModeType`: every bit that makes an entry something other than a regular file.
pub(crate) const MODE_TYPE: u32 = MODE_DIR
    | MODE_SYMLINK
    | MODE_NAMED_PIPE
    | MODE_SOCKET
    | MODE_DEVICE
    | MODE_CHAR_DEVICE
    | MODE_IRREGULAR;

/// The Go `FileMode` of an entry, from its `lstat` metadata.
pub(crate) fn go_mode(md: &Metadata) -> u32 {
    let st = md.mode();
    let mut mode = st & 0o777;
    let ft = md.file_type();
    if ft.is_dir() {
        mode |= MODE_DIR;
    } else if ft.is_symlink() {
        mode |= MODE_SYMLINK;
    } else if ft.is_fifo() {
        mode |= MODE_NAMED_PIPE;
    } else if ft.is_socket() {
        mode |= MODE_SOCKET;
    } else if ft.is_block_device() {
        mode |= MODE_DEVICE;
    } else if ft.is_char_device() {
        mode |= MODE_DEVICE | MODE_CHAR_DEVICE;
    }
    if st & 0o4000 != 0 {
        mode |= MODE_SETUID;
    }
    if st & 0o2000 != 0 {
        mode |= MODE_SETGID;
    }
    if st & 0o1000 != 0 {
        mode |= MODE_STICKY;
    }
    mode
}

/// The POSIX permission bits (including setuid, setgid, sticky) of a Go `FileMode`.
pub(crate) fn posix_perm(mode: u32) -> u32 {
    let mut perm = mode & 0o777;
    if mode & MODE_SETUID != 0 {
        perm |= 0o4000;
    }
    if mode & MODE_SETGID != 0 {
        perm |= 0o2000;
    }
    if mode & MODE_STICKY != 0 {
        perm |= 0o1000;
    }
    perm
}

/// Whether the entry is a regular file (the only kind whose data can be requested).
pub(crate) fn is_regular(mode: u32) -> bool {
    mode & MODE_TYPE == 0
}

/// Linux `major(rdev)`.
pub(crate) fn dev_major(rdev: u64) -> i64 {
    (((rdev >> 8) & 0xfff) | ((rdev >> 32) & 0xffff_f000)) as i64
}

/// Linux `minor(rdev)`.
pub(crate) fn dev_minor(rdev: u64) -> i64 {
    ((rdev & 0xff) | ((rdev >> 12) & 0xffff_ff00)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_of_real_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").expect("write");
        std::os::unix::fs::symlink("f", dir.path().join("l")).expect("symlink");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o4751)).expect("chmod");

        let d = go_mode(&std::fs::symlink_metadata(dir.path()).expect("stat"));
        assert_eq!(d & MODE_DIR, MODE_DIR);
        assert!(!is_regular(d));
        let f = go_mode(&std::fs::symlink_metadata(&file).expect("stat"));
        assert_eq!(f, 0o751 | MODE_SETUID);
        assert!(is_regular(f));
        assert_eq!(posix_perm(f), 0o4751);
        let l = go_mode(&std::fs::symlink_metadata(dir.path().join("l")).expect("stat"));
        assert_eq!(l & MODE_TYPE, MODE_SYMLINK);
    }

    #[test]
    fn device_numbers() {
        // makedev(8, 1) and glibc's makedev(0x1234, 70000)
        assert_eq!((dev_major(0x801), dev_minor(0x801)), (8, 1));
        let (major, minor) = (std::hint::black_box(0x1234u64), 70000u64);
        let rdev: u64 = ((major & 0xfff) << 8)
            | ((major & !0xfff) << 32)
            | (minor & 0xff)
            | ((minor & !0xff) << 12);
        assert_eq!((dev_major(rdev), dev_minor(rdev)), (0x1234, 70000));
    }
}
