//! What asks for a reload: SIGHUP, and (with `tasks_watch: true`) a change of the
//! tasks file on disk, seen by inotify on its directory (editors and config
//! management replace files by rename) and debounced, so a save that writes
//! several times reloads once. Both only raise a flag; the source core reloads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the file must stay quiet after a change before it is read.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Raises `flag` on every SIGHUP.
pub fn on_sighup(flag: &Arc<AtomicBool>) -> std::io::Result<()> {
    signal_hook::flag::register(signal_hook::consts::SIGHUP, flag.clone()).map(|_| ())
}

/// Raises `flag` after `file` changed on disk and stayed quiet for [`DEBOUNCE`].
/// Runs on its own thread for the life of the process.
pub fn on_file_change(file: &Path, flag: Arc<AtomicBool>) -> std::io::Result<()> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = file
        .file_name()
        .map(|n| n.as_encoded_bytes().to_vec())
        .unwrap_or_default();
    // SAFETY: plain syscall; the fd is owned by the thread below.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::other("the tasks file's directory has a NUL in its name"))?;
    let mask = libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO | libc::IN_CREATE | libc::IN_MODIFY;
    // SAFETY: fd is a valid inotify fd, c_dir a valid C string.
    if unsafe { libc::inotify_add_watch(fd, c_dir.as_ptr(), mask) } < 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: fd is ours and not used after this.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    std::thread::Builder::new()
        .name("rowhook-tasks-watch".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                if !wait_readable(fd, None) {
                    continue;
                }
                if !read_names(fd, &mut buf).contains(&name) {
                    continue;
                }
                // Quiet for DEBOUNCE: only more events of this file restart the
                // wait (a log file written in the same directory must not).
                let mut quiet_at = Instant::now() + DEBOUNCE;
                loop {
                    let left = quiet_at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    if wait_readable(fd, Some(left)) && read_names(fd, &mut buf).contains(&name) {
                        quiet_at = Instant::now() + DEBOUNCE;
                    }
                }
                flag.store(true, Ordering::Relaxed);
            }
        })
        .map(|_| ())
}

/// Waits until `fd` is readable (or `limit` passes); true when readable.
fn wait_readable(fd: i32, limit: Option<Duration>) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = limit.map_or(-1, |d| i32::try_from(d.as_millis()).unwrap_or(i32::MAX));
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// Reads one batch of inotify events and returns the names they carry.
fn read_names(fd: i32, buf: &mut [u8]) -> Vec<Vec<u8>> {
    // SAFETY: buf is valid for buf.len() bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    let Ok(n) = usize::try_from(n) else {
        return Vec::new();
    };
    event_names(buf.get(..n).unwrap_or_default())
}

/// The names in a buffer of `struct inotify_event` records (wd, mask, cookie,
/// len, then `len` bytes of NUL-padded name); a short record ends the walk.
pub fn event_names(mut buf: &[u8]) -> Vec<Vec<u8>> {
    let mut names = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[12], buf[13], buf[14], buf[15]]) as usize;
        let Some(name) = buf.get(16..16 + len) else {
            break;
        };
        let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
        names.push(name[..end].to_vec());
        buf = &buf[16 + len..];
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_records_yield_their_names_and_a_torn_one_stops() {
        let mut buf = Vec::new();
        for (name, pad) in [(&b"tasks.yaml"[..], 6), (&b""[..], 0), (&b"x"[..], 15)] {
            buf.extend_from_slice(&[1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0]);
            buf.extend_from_slice(&((name.len() + pad) as u32).to_ne_bytes());
            buf.extend_from_slice(name);
            buf.extend(std::iter::repeat_n(0, pad));
        }
        let names = event_names(&buf);
        assert_eq!(names, [b"tasks.yaml".to_vec(), Vec::new(), b"x".to_vec()]);
        assert_eq!(event_names(&buf[..buf.len() - 1]).len(), 2);
    }

    #[test]
    fn a_change_on_disk_raises_the_flag_once_quiet() {
        let dir = std::env::temp_dir().join(format!("rowhook-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tasks.yaml");
        std::fs::write(&file, "a").unwrap();
        let flag = Arc::new(AtomicBool::new(false));
        on_file_change(&file, flag.clone()).unwrap();
        std::fs::write(dir.join("other.yaml"), "x").unwrap();
        std::thread::sleep(DEBOUNCE * 2);
        assert!(!flag.load(Ordering::Relaxed), "another file is not ours");
        // A log written in the same directory all along does not hold the
        // reload back.
        let noisy = dir.join("rowhook.log");
        let stop = Arc::new(AtomicBool::new(false));
        let noise = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = std::fs::write(&noisy, "line");
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        // Replaced by rename, as editors do.
        std::fs::write(dir.join(".tasks.yaml.tmp"), "b").unwrap();
        std::fs::rename(dir.join(".tasks.yaml.tmp"), &file).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !flag.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        noise.join().unwrap();
        assert!(flag.load(Ordering::Relaxed));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
