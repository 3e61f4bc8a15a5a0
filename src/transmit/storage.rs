//! Offline storage: telemetry that could not be delivered for a reason that may pass (network
//! errors, timeouts, retryable status codes) is kept on disk and sent again later, by this
//! process or by the next one that uses the same directory.
//!
//! The layout follows the official exporters (MAPPING.md §8.5):
//!
//! - one directory per instrumentation key, user, executable and working directory, by default
//!   `{temp}/Microsoft-AzureMonitor-{sha256 hex}/opentelemetry-rust-{ikey}` ([`default_directory`]),
//!   created owner-only (0700) and refused when it belongs to another user;
//! - one file per stored batch, **JSON Lines** (one envelope per line, exactly the bytes that
//!   would have been sent), owner-only (0600), named `{created}-{tag}-{items}.blob` where
//!   `created` is the creation time in microseconds since 1970 on 20 digits (so that names sort
//!   oldest first), `tag` 8 random hex digits and `items` the number of lines;
//! - written as `{name}.tmp` and renamed, so that no reader ever sees half a file;
//! - taken for sending by renaming it to `{name}@{until}.lock` (a lease until `until`, in
//!   microseconds): of two processes that try, one wins the rename. A lease that ran out (its
//!   holder died) can be taken again; after a delivery the file is removed, after a retryable
//!   failure it is renamed back;
//! - bounded in size ([`DEFAULT_MAX_SIZE`]) and age ([`DEFAULT_RETENTION`], judged by the name):
//!   the oldest data is dropped first, with a warning that says how much.
//!
//! Nothing in a path is ever derived from telemetry content: names are made of times, random
//! numbers and counts only.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::encode::EncodedItems;

/// The most bytes stored by default: 50 MiB, as the official exporters.
pub(crate) const DEFAULT_MAX_SIZE: u64 = 50 * 1024 * 1024;

/// How long stored telemetry is kept by default: 48 hours, as the official exporters (the
/// service refuses items older than that anyway).
pub(crate) const DEFAULT_RETENTION: Duration = Duration::from_secs(48 * 60 * 60);

/// A `.tmp` file older than this was left by a writer that died; it is removed.
const STALE_TMP: Duration = Duration::from_secs(60);

const BLOB: &str = ".blob";
const LOCK: &str = ".lock";
const TMP: &str = ".tmp";

/// The default storage directory for an instrumentation key:
/// `{temp}/Microsoft-AzureMonitor-{sha256(ikey;user;exe;cwd) hex}/opentelemetry-rust-{ikey}`,
/// with `temp` from [`std::env::temp_dir`], `user` from `LOGNAME`, `USER`, `LNAME` or `USERNAME`
/// (as Python's `getpass.getuser`), `exe` the path of the running executable and `cwd` the
/// working directory (each empty when unknown).
pub(crate) fn default_directory(ikey: &str) -> PathBuf {
    let user = ["LOGNAME", "USER", "LNAME", "USERNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|u| !u.is_empty()))
        .unwrap_or_default();
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    directory_in(&std::env::temp_dir(), ikey, &user, &exe, &cwd)
}

fn directory_in(temp: &Path, ikey: &str, user: &str, exe: &str, cwd: &str) -> PathBuf {
    use std::fmt::Write as _;
    let digest = Sha256::digest(format!("{ikey};{user};{exe};{cwd}").as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    // The key is a GUID (checked when the connection string is parsed); keep only what a GUID
    // is made of anyway, so that no separator or `..` can ever reach the path.
    let key: String = ikey
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    temp.join(format!("Microsoft-AzureMonitor-{hex}"))
        .join(format!("opentelemetry-rust-{key}"))
}

/// Where and how much to store.
#[derive(Clone)]
pub(crate) struct StorageConfig {
    /// The storage directory; created (0700) when missing.
    pub(crate) directory: PathBuf,
    /// Whether the directory's parent must belong to this user too (the default directory's
    /// `Microsoft-AzureMonitor-…` parent, in a shared temp directory).
    pub(crate) private_parent: bool,
    /// The most bytes kept; the oldest files are dropped to make room.
    pub(crate) max_size: u64,
    /// Files older than this are dropped.
    pub(crate) retention: Duration,
    /// Text never shown in messages: the instrumentation key, part of the default directory's
    /// name. It is replaced by `<instrumentation key>`.
    pub(crate) secret: String,
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageConfig")
            .field("directory", &redact(&self.directory, &self.secret))
            .field("private_parent", &self.private_parent)
            .field("max_size", &self.max_size)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// The path as shown in messages: without the instrumentation key.
fn redact(path: &Path, secret: &str) -> String {
    let shown = path.display().to_string();
    if secret.is_empty() {
        shown
    } else {
        shown.replace(secret, "<instrumentation key>")
    }
}

/// An opened storage directory. Shared by the exporter's callers (which store when the
/// endpoint is known to be failing) and its worker (which stores what it could not deliver and
/// sends stored files again).
pub(crate) struct Storage {
    dir: PathBuf,
    max_size: u64,
    retention: Duration,
    /// The directory as shown in messages.
    shown: String,
    /// Serializes this process's writes, so that room is made for one file at a time.
    writing: Mutex<()>,
    /// The files this process wrote (creation time and tag), sent first by a shutdown's drain:
    /// the directory may go away with the process, an earlier run's data has outlived one
    /// already.
    own: Mutex<std::collections::HashSet<(u64, u32)>>,
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage")
            .field("directory", &self.shown)
            .field("max_size", &self.max_size)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// A stored file taken for sending (see [`Storage::lease_oldest`]). Give it back with
/// [`Storage::remove`], [`Storage::release`] or [`Storage::replace`]; a lease that is dropped
/// runs out on its own and the file is then sent again.
#[derive(Debug)]
pub(crate) struct Lease {
    path: PathBuf,
    name: Name,
}

impl Lease {
    /// How many items the file was written with (its name says so).
    pub(crate) fn items(&self) -> usize {
        self.name.items
    }
}

/// The items read back from a stored file.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// Every line that is a JSON object, in file order.
    pub(crate) items: EncodedItems,
    /// Lines that are not (a damaged file); they were skipped.
    pub(crate) corrupt: usize,
}

/// The parts of a stored file's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Name {
    /// Microseconds since 1970 when the data was first stored.
    created: u64,
    tag: u32,
    items: usize,
}

impl Name {
    fn file_name(&self) -> String {
        format!("{:020}-{:08x}-{}{BLOB}", self.created, self.tag, self.items)
    }

    fn lock_name(&self, until: u64) -> String {
        format!("{}@{until:020}{LOCK}", self.file_name())
    }

    /// Parses `{created}-{tag}-{items}` (without `.blob`).
    fn parse(stem: &str) -> Option<Name> {
        let mut parts = stem.split('-');
        let (created, tag, items) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some()
            || created.len() != 20
            || tag.len() != 8
            || !created.bytes().all(|b| b.is_ascii_digit())
            || !items.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        Some(Name {
            created: created.parse().ok()?,
            tag: u32::from_str_radix(tag, 16).ok()?,
            items: items.parse().ok()?,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// `.blob`: waiting to be sent.
    Stored,
    /// `.lock`: taken for sending until this time (µs since 1970).
    Leased { until: u64 },
    /// `.tmp`: being written.
    Writing,
}

/// One of our files found in the directory.
#[derive(Debug)]
struct Found {
    path: PathBuf,
    name: Name,
    state: State,
    size: u64,
    /// When the file was last written (µs since 1970), if the file system says.
    modified: Option<u64>,
}

/// What was dropped, for one warning.
#[derive(Default)]
struct Tally {
    files: usize,
    items: usize,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, found: &Found) {
        self.files += 1;
        self.items = self.items.saturating_add(found.name.items);
        self.bytes = self.bytes.saturating_add(found.size);
    }
}

fn parse_file_name(file: &str) -> Option<(Name, State)> {
    if let Some(blob) = file.strip_suffix(TMP) {
        return Some((Name::parse(blob.strip_suffix(BLOB)?)?, State::Writing));
    }
    if let Some(lock) = file.strip_suffix(LOCK) {
        let (blob, until) = lock.rsplit_once('@')?;
        if until.len() != 20 || !until.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let until = until.parse().ok()?;
        return Some((
            Name::parse(blob.strip_suffix(BLOB)?)?,
            State::Leased { until },
        ));
    }
    Some((Name::parse(file.strip_suffix(BLOB)?)?, State::Stored))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn micros_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, micros)
}

fn now_micros() -> u64 {
    micros_since_epoch(SystemTime::now())
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Which stored files [`Storage::lease_next`] takes, each group oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Files {
    /// Any file.
    Oldest,
    /// The files this process wrote, then those of earlier processes.
    OwnFirst,
    /// Only the files this process wrote.
    OwnOnly,
}

/// Creates a new file readable and writable by its owner only; fails if it exists.
fn create_private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn remove(path: &Path) -> bool {
    match fs::remove_file(path) {
        Ok(()) => true,
        Err(e) => {
            if e.kind() != ErrorKind::NotFound {
                opentelemetry::otel_debug!(
                    name: "AzureMonitor.Storage.RemoveFailed",
                    error = e.to_string()
                );
            }
            false
        }
    }
}

impl Storage {
    /// Opens (creating it if needed) the storage directory, and checks that it belongs to this
    /// user and that files can be written there. A directory open to group or others is made
    /// owner-only.
    ///
    /// # Errors
    ///
    /// When the directory cannot be created or written, or belongs to another user. Messages
    /// show the directory without the instrumentation key.
    pub(crate) fn open(config: StorageConfig) -> io::Result<Storage> {
        let dir = config.directory;
        let shown = redact(&dir, &config.secret);
        let context = |what: &str, e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("{what} the storage directory {shown}: {e}"),
            )
        };
        create_private_dir(&dir).map_err(|e| context("cannot create", e))?;
        let meta = fs::metadata(&dir).map_err(|e| context("cannot read", e))?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!("the storage directory {shown} is not a directory"),
            ));
        }
        // Creating a file tells whether we can write here, and (on Unix) who we are.
        let probe = dir.join(format!(".probe-{:08x}{TMP}", fastrand::u32(..)));
        let probed = create_private_file(&probe).and_then(|file| file.metadata());
        let _ = fs::remove_file(&probe);
        let probed = probed.map_err(|e| context("cannot write in", e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let me = probed.uid();
            let mut owned = vec![(&*dir, &meta)];
            let parent_meta;
            if config.private_parent {
                if let Some(parent) = dir.parent() {
                    parent_meta = fs::metadata(parent).map_err(|e| context("cannot read", e))?;
                    owned.push((parent, &parent_meta));
                }
            }
            for (path, meta) in owned {
                if meta.uid() != me {
                    return Err(io::Error::new(
                        ErrorKind::PermissionDenied,
                        format!(
                            "the storage directory {shown} is not safe: {} belongs to another \
                             user (uid {}, not {me})",
                            redact(path, &config.secret),
                            meta.uid()
                        ),
                    ));
                }
            }
            if meta.mode() & 0o077 != 0 {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| context("cannot make owner-only", e))?;
            }
        }
        #[cfg(not(unix))]
        let _ = probed;
        Ok(Storage {
            dir,
            max_size: config.max_size,
            retention: config.retention,
            shown,
            writing: Mutex::new(()),
            own: Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// The directory as shown in messages (without the instrumentation key).
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// Stores items `indices` of `items` as one new file, after dropping expired files and,
    /// when the size limit would be passed, the oldest files. Returns how many items were
    /// stored (indices of items that do not exist are skipped).
    ///
    /// # Errors
    ///
    /// When the file cannot be written, or the items alone are larger than the size limit.
    pub(crate) fn store(
        &self,
        items: &EncodedItems,
        indices: impl IntoIterator<Item = usize>,
    ) -> io::Result<usize> {
        self.write(now_micros(), items, indices, None)
            .map(|(stored, _)| stored)
    }

    /// Stores items `indices` of `items` as one new file that is taken for sending at once,
    /// until `hold` from now: a delivery still running keeps it, and gives it back with
    /// [`remove`](Self::remove), [`release`](Self::release) or [`replace`](Self::replace) when
    /// it ends. Should the process stop first, the file is sent again once the lease has run
    /// out. `None` when none of the indices exists.
    ///
    /// # Errors
    ///
    /// As [`store`](Self::store).
    pub(crate) fn hold(
        &self,
        items: &EncodedItems,
        indices: impl IntoIterator<Item = usize>,
        hold: Duration,
    ) -> io::Result<Option<Lease>> {
        let until = now_micros().saturating_add(micros(hold));
        self.write(now_micros(), items, indices, Some(until))
            .map(|(_, lease)| lease)
    }

    /// How many items this storage (this exporter) wrote that are still in the directory,
    /// waiting for delivery (stored or taken for sending).
    pub(crate) fn waiting_items(&self) -> usize {
        let found = self.scan().unwrap_or_default();
        let mut own = lock(&self.own);
        let mine: Vec<&Found> = found
            .iter()
            .filter(|f| f.state != State::Writing && own.contains(&(f.name.created, f.name.tag)))
            .collect();
        // Forget files that are gone (sent by another process, dropped for room or age).
        own.retain(|k| mine.iter().any(|f| (f.name.created, f.name.tag) == *k));
        mine.iter().map(|f| f.name.items).sum()
    }

    /// Writes the file, as `{name}.blob`, or leased until `until` when given (its lease is
    /// returned). Returns how many items were written.
    fn write(
        &self,
        created: u64,
        items: &EncodedItems,
        indices: impl IntoIterator<Item = usize>,
        until: Option<u64>,
    ) -> io::Result<(usize, Option<Lease>)> {
        let lines: Vec<&[u8]> = indices.into_iter().filter_map(|i| items.get(i)).collect();
        if lines.is_empty() {
            return Ok((0, None));
        }
        let size: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        if size > self.max_size {
            return Err(io::Error::new(
                ErrorKind::StorageFull,
                format!(
                    "{size} bytes of telemetry are more than the storage size limit of {} bytes",
                    self.max_size
                ),
            ));
        }
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        self.maintain(size, now_micros());
        let mut attempts = 0;
        loop {
            attempts += 1;
            let parts = Name {
                created,
                tag: fastrand::u32(..),
                items: lines.len(),
            };
            let name = match until {
                None => parts.file_name(),
                Some(until) => parts.lock_name(until),
            };
            let tmp = self.dir.join(format!("{name}{TMP}"));
            let file = match create_private_file(&tmp) {
                // Same microsecond and tag as another writer: draw another tag.
                Err(e) if e.kind() == ErrorKind::AlreadyExists && attempts < 8 => continue,
                other => other?,
            };
            let written = write_lines(file, &lines).and_then(|()| {
                // Renaming over an existing name would replace another writer's file.
                let target = self.dir.join(&name);
                if target.exists() {
                    return Err(io::Error::from(ErrorKind::AlreadyExists));
                }
                fs::rename(&tmp, target)
            });
            match written {
                Ok(()) => {
                    lock(&self.own).insert((parts.created, parts.tag));
                    let lease = until.map(|_| Lease {
                        path: self.dir.join(&name),
                        name: parts,
                    });
                    return Ok((lines.len(), lease));
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    if e.kind() != ErrorKind::AlreadyExists || attempts >= 8 {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Our files in the directory (others are ignored).
    fn scan(&self) -> io::Result<Vec<Found>> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let Ok(entry) = entry else { continue };
            let file_name = entry.file_name();
            let Some((name, state)) = file_name.to_str().and_then(parse_file_name) else {
                continue;
            };
            // Gone meanwhile (sent or leased by someone else): skip it.
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            found.push(Found {
                path: entry.path(),
                name,
                state,
                size: meta.len(),
                modified: meta.modified().ok().map(micros_since_epoch),
            });
        }
        Ok(found)
    }

    /// Drops expired files, stale `.tmp` files and, to make room for `incoming` bytes, the
    /// oldest files; warns about what was dropped. Returns the files that can be leased, oldest
    /// first.
    fn maintain(&self, incoming: u64, now: u64) -> Vec<Found> {
        let found = match self.scan() {
            Ok(found) => found,
            Err(e) => {
                opentelemetry::otel_debug!(
                    name: "AzureMonitor.Storage.ScanFailed",
                    directory = self.shown.as_str(),
                    error = e.to_string()
                );
                return Vec::new();
            }
        };
        let cutoff = now.saturating_sub(micros(self.retention));
        let stale = now.saturating_sub(micros(STALE_TMP));
        let mut expired = Tally::default();
        let mut total: u64 = 0;
        let mut candidates = Vec::new();
        for f in found {
            let leasable = match f.state {
                State::Stored => true,
                State::Leased { until } => until <= now,
                State::Writing => {
                    // A file being rewritten keeps its old creation time in its name: judge
                    // by when it was written.
                    if f.modified.unwrap_or(f.name.created) < stale {
                        remove(&f.path);
                    }
                    continue;
                }
            };
            if leasable && f.name.created < cutoff {
                if remove(&f.path) {
                    expired.add(&f);
                }
                continue;
            }
            total = total.saturating_add(f.size);
            if leasable {
                candidates.push(f);
            }
        }
        candidates.sort_by_key(|f| f.name);
        if expired.files > 0 {
            opentelemetry::otel_warn!(
                name: "AzureMonitor.Storage.Expired",
                message = "stored telemetry older than the storage retention period was dropped",
                files = expired.files,
                items = expired.items,
                bytes = expired.bytes
            );
        }
        let mut full = Tally::default();
        let mut dropped = 0;
        for f in &candidates {
            if incoming == 0 || total.saturating_add(incoming) <= self.max_size {
                break;
            }
            dropped += 1;
            if remove(&f.path) {
                full.add(f);
            }
            total = total.saturating_sub(f.size);
        }
        candidates.drain(..dropped);
        if full.files > 0 {
            opentelemetry::otel_warn!(
                name: "AzureMonitor.Storage.Full",
                message = "offline storage reached its size limit; the oldest stored telemetry was dropped to make room",
                files = full.files,
                items = full.items,
                bytes = full.bytes
            );
        }
        candidates
    }

    /// Takes the oldest stored file (or one whose lease ran out) for sending, until `hold` from
    /// now, after dropping expired files. `None` when there is nothing to send.
    ///
    /// # Errors
    ///
    /// When a file cannot be renamed for a reason other than another process taking it first.
    pub(crate) fn lease_oldest(&self, hold: Duration) -> io::Result<Option<Lease>> {
        self.lease_next(hold, Files::Oldest)
    }

    /// As [`lease_oldest`](Self::lease_oldest), choosing among the files as `which` says.
    ///
    /// # Errors
    ///
    /// As [`lease_oldest`](Self::lease_oldest).
    pub(crate) fn lease_next(&self, hold: Duration, which: Files) -> io::Result<Option<Lease>> {
        let now = now_micros();
        let until = now.saturating_add(micros(hold));
        let mut candidates = self.maintain(0, now);
        if which != Files::Oldest {
            let own = lock(&self.own);
            let is_own = |f: &Found| own.contains(&(f.name.created, f.name.tag));
            if which == Files::OwnOnly {
                candidates.retain(|f| is_own(f));
            } else {
                // Stable: each group stays oldest first.
                candidates.sort_by_key(|f| !is_own(f));
            }
        }
        for f in candidates {
            let path = self.dir.join(f.name.lock_name(until));
            match fs::rename(&f.path, &path) {
                Ok(()) => return Ok(Some(Lease { path, name: f.name })),
                // Another sender took it first.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Reads a leased file: every line that is a JSON object becomes an item; other lines
    /// (a damaged file) are skipped with a warning.
    ///
    /// # Errors
    ///
    /// When the file cannot be read (it may have been taken over after its lease ran out), or
    /// is larger than the size limit (it cannot be ours).
    pub(crate) fn read(&self, lease: &Lease) -> io::Result<Loaded> {
        let size = fs::metadata(&lease.path)?.len();
        if size > self.max_size {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                format!(
                    "a stored file of {size} bytes is larger than the size limit of {} bytes",
                    self.max_size
                ),
            ));
        }
        let data = fs::read(&lease.path)?;
        let mut items = EncodedItems::with_capacity(data.len(), lease.name.items.min(data.len()));
        let mut corrupt = 0;
        for line in data.split(|&b| b == b'\n') {
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            let is_object = line.first() == Some(&b'{')
                && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok();
            if is_object {
                items.push_json(line);
            } else {
                corrupt += 1;
            }
        }
        if corrupt > 0 {
            opentelemetry::otel_warn!(
                name: "AzureMonitor.Storage.Corrupt",
                message = "a stored file holds lines that are not telemetry items; they were dropped",
                lines = corrupt,
                items = items.len()
            );
        }
        Ok(Loaded { items, corrupt })
    }

    /// Removes a leased file: its items were delivered or refused for good.
    pub(crate) fn remove(&self, lease: Lease) {
        lock(&self.own).remove(&(lease.name.created, lease.name.tag));
        remove(&lease.path);
    }

    /// Gives a leased file back to be sent again: at once (`None`), or not before `until` (the
    /// service's `Retry-After`), also by other processes.
    pub(crate) fn release(&self, lease: Lease, until: Option<SystemTime>) {
        let target = match until {
            None => lease.name.file_name(),
            Some(t) => lease.name.lock_name(micros_since_epoch(t)),
        };
        if let Err(e) = fs::rename(&lease.path, self.dir.join(target)) {
            // Taken over after the lease ran out: the new holder sends it.
            if e.kind() != ErrorKind::NotFound {
                opentelemetry::otel_debug!(
                    name: "AzureMonitor.Storage.ReleaseFailed",
                    error = e.to_string()
                );
            }
        }
    }

    /// Replaces a leased file with one holding only items `keep` of `items` (the rest was
    /// delivered or refused), keeping its creation time (its age and place in line). Returns
    /// how many items were kept.
    ///
    /// # Errors
    ///
    /// When the new file cannot be written; the leased file is then left as it is.
    pub(crate) fn replace(
        &self,
        lease: Lease,
        items: &EncodedItems,
        keep: &[usize],
    ) -> io::Result<usize> {
        let (kept, _) = self.write(lease.name.created, items, keep.iter().copied(), None)?;
        lock(&self.own).remove(&(lease.name.created, lease.name.tag));
        remove(&lease.path);
        Ok(kept)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn write_lines(file: File, lines: &[&[u8]]) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    for line in lines {
        out.write_all(line)?;
        out.write_all(b"\n")?;
    }
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    // Durable before it is visible under its final name.
    file.sync_data()
}

#[cfg(test)]
pub(crate) mod tests;
