use std::collections::HashSet;
use std::sync::Arc;

use super::*;

/// A directory of our own under the temp directory, removed when dropped.
pub(crate) struct TestDir(pub(crate) PathBuf);

impl TestDir {
    pub(crate) fn new(label: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!(
            "azure-monitor-storage-test-{label}-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        TestDir(dir)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn config(dir: &Path) -> StorageConfig {
    StorageConfig {
        directory: dir.to_path_buf(),
        private_parent: false,
        max_size: DEFAULT_MAX_SIZE,
        retention: DEFAULT_RETENTION,
        secret: String::new(),
    }
}

/// How much older than now the files of "an earlier process" are made: far more than the
/// time between two writes of a test, even on a loaded disk (5 ms was not, in a run with
/// another process syncing to the same disk).
const A_MINUTE: u64 = 60_000_000;

fn open(dir: &Path) -> Storage {
    Storage::open(config(dir)).unwrap()
}

/// Items `{"n":first}` .. `{"n":first+count-1}`.
fn items(first: usize, count: usize) -> EncodedItems {
    let mut items = EncodedItems::default();
    for n in first..first + count {
        items.push_json(format!(r#"{{"n":{n}}}"#).as_bytes());
    }
    items
}

fn all(items: &EncodedItems) -> std::ops::Range<usize> {
    0..items.len()
}

fn numbers(items: &EncodedItems) -> Vec<u64> {
    items
        .iter()
        .map(|j| {
            let v: serde_json::Value = serde_json::from_slice(j).unwrap();
            v["n"].as_u64().unwrap()
        })
        .collect()
}

/// The names of our files in the directory, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Takes every stored file, oldest first, and returns the numbers each held.
fn drain(storage: &Storage) -> Vec<Vec<u64>> {
    let mut out = Vec::new();
    while let Some(lease) = storage.lease_oldest(Duration::from_secs(60)).unwrap() {
        out.push(numbers(&storage.read(&lease).unwrap().items));
        storage.remove(lease);
    }
    out
}

#[test]
fn stored_items_are_read_back_as_json_lines() {
    let dir = TestDir::new("roundtrip");
    let storage = open(&dir.0);
    let batch = items(0, 5);
    assert_eq!(storage.store(&batch, [0, 2, 4, 99]).unwrap(), 3);
    let names = files(&dir.0);
    assert_eq!(names.len(), 1);
    assert!(names[0].ends_with("-3.blob"), "{names:?}");
    let raw = fs::read_to_string(dir.0.join(&names[0])).unwrap();
    assert_eq!(raw, "{\"n\":0}\n{\"n\":2}\n{\"n\":4}\n");

    let lease = storage
        .lease_oldest(Duration::from_secs(60))
        .unwrap()
        .unwrap();
    assert_eq!(lease.items(), 3);
    assert!(files(&dir.0)[0].ends_with(".lock"));
    let loaded = storage.read(&lease).unwrap();
    assert_eq!(loaded.corrupt, 0);
    assert_eq!(numbers(&loaded.items), [0, 2, 4]);
    storage.remove(lease);
    assert!(files(&dir.0).is_empty());
    assert!(storage
        .lease_oldest(Duration::from_secs(60))
        .unwrap()
        .is_none());
    // Nothing to store: no file.
    assert_eq!(storage.store(&batch, []).unwrap(), 0);
    assert!(files(&dir.0).is_empty());
}

#[test]
fn files_are_sent_oldest_first_and_leased_once() {
    let dir = TestDir::new("order");
    let storage = open(&dir.0);
    let now = now_micros();
    // Written out of order: 2, 0, 1.
    for (age, first) in [(1_000, 20), (3_000, 0), (2_000, 10)] {
        storage
            .write(now - age, &items(first, 2), [0, 1], None)
            .unwrap();
    }
    let first = storage
        .lease_oldest(Duration::from_secs(60))
        .unwrap()
        .unwrap();
    assert_eq!(numbers(&storage.read(&first).unwrap().items), [0, 1]);
    // A leased file is not handed out again while its lease runs.
    let second = storage
        .lease_oldest(Duration::from_secs(60))
        .unwrap()
        .unwrap();
    assert_eq!(numbers(&storage.read(&second).unwrap().items), [10, 11]);
    // Given back: it is first in line again.
    storage.release(first, None);
    assert_eq!(drain(&storage), [vec![0, 1], vec![20, 21]]);
    storage.remove(second);
    assert!(files(&dir.0).is_empty());
}

#[test]
fn a_lease_that_ran_out_is_taken_again_and_a_retry_after_lease_waits() {
    let dir = TestDir::new("lease");
    let storage = open(&dir.0);
    storage.store(&items(0, 1), [0]).unwrap();
    // A holder that died: its lease has run out.
    let dead = storage.lease_oldest(Duration::ZERO).unwrap().unwrap();
    let again = storage
        .lease_oldest(Duration::from_secs(60))
        .unwrap()
        .unwrap();
    assert_eq!(numbers(&storage.read(&again).unwrap().items), [0]);
    // The dead holder's file is gone (renamed by the new holder).
    assert!(storage.read(&dead).is_err());
    storage.remove(dead);
    assert_eq!(files(&dir.0).len(), 1);
    // Given back not before a Retry-After an hour away: not leased meanwhile.
    storage.release(again, Some(SystemTime::now() + Duration::from_secs(3600)));
    assert!(storage
        .lease_oldest(Duration::from_secs(60))
        .unwrap()
        .is_none());
    assert_eq!(files(&dir.0).len(), 1);
}

#[test]
fn replacing_keeps_the_place_in_line() {
    let dir = TestDir::new("replace");
    let storage = open(&dir.0);
    let now = now_micros();
    storage
        .write(now - 2_000, &items(0, 4), [0, 1, 2, 3], None)
        .unwrap();
    storage
        .write(now - 1_000, &items(10, 1), [0], None)
        .unwrap();
    let lease = storage
        .lease_oldest(Duration::from_secs(60))
        .unwrap()
        .unwrap();
    let loaded = storage.read(&lease).unwrap();
    // Items 1 and 3 were not delivered.
    assert_eq!(storage.replace(lease, &loaded.items, &[1, 3]).unwrap(), 2);
    assert_eq!(drain(&storage), [vec![1, 3], vec![10]]);
}

#[test]
fn expired_files_and_stale_temporary_files_are_dropped() {
    let dir = TestDir::new("retention");
    let storage = Storage::open(StorageConfig {
        retention: Duration::from_secs(3600),
        ..config(&dir.0)
    })
    .unwrap();
    let now = now_micros();
    let hour = 3_600_000_000;
    storage
        .write(now - 2 * hour, &items(0, 3), [0, 1, 2], None)
        .unwrap();
    storage
        .write(now - hour / 2, &items(10, 1), [0], None)
        .unwrap();
    // A writer that died an hour ago, and one rewriting an old file now.
    let stale = Name {
        created: now - hour,
        tag: 1,
        items: 1,
    };
    let fresh = Name {
        created: now - 2 * hour,
        tag: 2,
        items: 1,
    };
    for name in [stale, fresh] {
        fs::write(dir.0.join(format!("{}{TMP}", name.file_name())), "{}\n").unwrap();
    }
    let stale_file = File::options()
        .write(true)
        .open(dir.0.join(format!("{}{TMP}", stale.file_name())))
        .unwrap();
    stale_file
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    drop(stale_file);
    // Not ours: left alone.
    fs::write(dir.0.join("notes.txt"), "hello").unwrap();
    assert_eq!(drain(&storage), [vec![10]]);
    assert_eq!(
        files(&dir.0),
        [
            format!("{}{TMP}", fresh.file_name()),
            "notes.txt".to_owned()
        ]
    );
}

#[test]
fn the_oldest_files_make_room_when_the_size_limit_is_reached() {
    let dir = TestDir::new("cap");
    // Each file of 10 items `{"n":NN}\n` is 90 bytes; room for 3 files.
    let storage = Storage::open(StorageConfig {
        max_size: 300,
        ..config(&dir.0)
    })
    .unwrap();
    let now = now_micros();
    for k in 0..5u64 {
        let batch = items(10 + 10 * k as usize, 10);
        storage
            .write(now - 5_000 + k, &batch, all(&batch), None)
            .unwrap();
    }
    let kept = drain(&storage);
    assert_eq!(kept.len(), 3);
    assert_eq!(kept[0].first(), Some(&30), "the two oldest were dropped");
    assert_eq!(kept[2].last(), Some(&59));

    // More than the whole limit at once: refused, nothing dropped for it.
    storage.store(&items(100, 1), [0]).unwrap();
    let big = items(1000, 40);
    let err = storage.store(&big, all(&big)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StorageFull);
    assert_eq!(drain(&storage), [vec![100]]);
}

#[test]
fn damaged_files_yield_their_good_lines() {
    let dir = TestDir::new("corrupt");
    let storage = open(&dir.0);
    let name = Name {
        created: now_micros(),
        tag: 7,
        items: 5,
    };
    fs::write(
        dir.0.join(name.file_name()),
        b"{\"n\":1}\r\n\n[1,2]\n{\"n\":2\n\xff\xfe garbage\n  {\"n\":3}  \n\"text\"\n",
    )
    .unwrap();
    let lease = storage
        .lease_oldest(Duration::from_secs(60))
        .unwrap()
        .unwrap();
    let loaded = storage.read(&lease).unwrap();
    assert_eq!(numbers(&loaded.items), [1, 3]);
    assert_eq!(loaded.corrupt, 4);
    storage.remove(lease);

    // Nothing usable at all.
    let junk = Name { tag: 8, ..name };
    fs::write(dir.0.join(junk.file_name()), b"\x00\x01\x02").unwrap();
    let lease = storage
        .lease_oldest(Duration::from_secs(60))
        .unwrap()
        .unwrap();
    let loaded = storage.read(&lease).unwrap();
    assert!(loaded.items.is_empty());
    assert_eq!(loaded.corrupt, 1);
    storage.remove(lease);

    // A file larger than the limit cannot be ours: not read.
    let small = Storage::open(StorageConfig {
        max_size: 10,
        ..config(&dir.0)
    })
    .unwrap();
    let huge = Name {
        tag: 9,
        items: usize::MAX,
        ..name
    };
    fs::write(dir.0.join(huge.file_name()), "{\"n\":12345678}\n").unwrap();
    let lease = small
        .lease_oldest(Duration::from_secs(60))
        .unwrap()
        .unwrap();
    assert_eq!(
        small.read(&lease).unwrap_err().kind(),
        ErrorKind::InvalidData
    );
}

#[test]
fn file_names_are_parsed_strictly() {
    let name = Name {
        created: 1_700_000_000_000_000,
        tag: 0xdead_beef,
        items: 512,
    };
    let blob = name.file_name();
    assert_eq!(blob, "00001700000000000000-deadbeef-512.blob");
    assert_eq!(parse_file_name(&blob), Some((name, State::Stored)));
    assert_eq!(
        parse_file_name(&name.lock_name(42)),
        Some((name, State::Leased { until: 42 }))
    );
    assert_eq!(
        parse_file_name(&format!("{blob}{TMP}")),
        Some((name, State::Writing))
    );
    for bad in [
        "",
        ".blob",
        "1-deadbeef-5.blob",
        "00001700000000000000-deadbeef-512.blob@1.lock",
        "00001700000000000000-deadbeeg-512.blob",
        "00001700000000000000-deadbeef-512-1.blob",
        "00001700000000000000-deadbeef--512.blob",
        "00001700000000000000-deadbeef-99999999999999999999999.blob",
        "../00001700000000000000-deadbeef-512.blob",
        ".probe-00000000.tmp",
    ] {
        assert_eq!(parse_file_name(bad), None, "{bad}");
    }
}

#[test]
fn two_exporters_can_share_a_directory() {
    let dir = TestDir::new("shared");
    let a = Arc::new(open(&dir.0));
    let b = Arc::new(open(&dir.0));
    // Two writers at once.
    let writers: Vec<_> = [(Arc::clone(&a), 0), (Arc::clone(&b), 10_000)]
        .into_iter()
        .map(|(storage, base)| {
            std::thread::spawn(move || {
                for k in 0..50 {
                    let batch = items(base + 10 * k, 10);
                    storage.store(&batch, all(&batch)).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(files(&dir.0).len(), 100);
    // Two senders at once: each file is taken by exactly one of them.
    let senders: Vec<_> = [a, b]
        .into_iter()
        .map(|storage| std::thread::spawn(move || drain(&storage)))
        .collect();
    let mut seen = Vec::new();
    for s in senders {
        for file in s.join().unwrap() {
            seen.extend(file);
        }
    }
    let distinct: HashSet<u64> = seen.iter().copied().collect();
    assert_eq!(seen.len(), 1000, "every item once");
    assert_eq!(distinct.len(), 1000);
    assert!(files(&dir.0).is_empty());
}

#[cfg(unix)]
#[test]
fn the_directory_and_files_are_owner_only() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = TestDir::new("perms");
    let nested = dir.0.join("a").join("b");
    let storage = open(&nested);
    assert_eq!(fs::metadata(&nested).unwrap().mode() & 0o777, 0o700);
    assert_eq!(fs::metadata(dir.0.join("a")).unwrap().mode() & 0o777, 0o700);
    storage.store(&items(0, 1), [0]).unwrap();
    let name = files(&nested).pop().unwrap();
    assert_eq!(
        fs::metadata(nested.join(name)).unwrap().mode() & 0o777,
        0o600
    );
    // An existing directory open to others is made owner-only.
    let open_dir = dir.0.join("open");
    fs::create_dir_all(&open_dir).unwrap();
    fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o777)).unwrap();
    drop(open(&open_dir));
    assert_eq!(fs::metadata(&open_dir).unwrap().mode() & 0o777, 0o700);
}

#[cfg(unix)]
#[test]
fn a_directory_of_another_user_is_refused() {
    use std::os::unix::fs::MetadataExt;
    // Not root: the temp directory (root's) is refused. Root: a directory handed to another uid.
    let temp = std::env::temp_dir();
    let me = {
        let dir = TestDir::new("me");
        fs::create_dir_all(&dir.0).unwrap();
        fs::metadata(&dir.0).unwrap().uid()
    };
    let root_owned = fs::metadata(&temp).unwrap().uid() != me;
    if root_owned {
        let err = Storage::open(config(&temp)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("another user"), "{err}");
    }
    // The parent check: a storage directory of our own inside a directory of another user.
    if me == 0 {
        let dir = TestDir::new("parent");
        let parent = dir.0.join("Microsoft-AzureMonitor-x");
        fs::create_dir_all(&parent).unwrap();
        // Root may hand the parent to another uid.
        std::os::unix::fs::chown(&parent, Some(12_345), None).unwrap();
        let err = Storage::open(StorageConfig {
            private_parent: true,
            ..config(&parent.join("opentelemetry-rust-k"))
        })
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        let err = Storage::open(config(&parent)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    }
    assert!(root_owned || me == 0, "neither case could be checked");
}

#[test]
fn an_unwritable_directory_is_an_error() {
    let dir = TestDir::new("unwritable");
    fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join("a-file");
    fs::write(&file, "x").unwrap();
    let err = Storage::open(config(&file.join("storage"))).unwrap_err();
    assert!(err.to_string().contains("cannot create"), "{err}");
    let err = Storage::open(config(&file)).unwrap_err();
    assert!(err.to_string().contains("storage directory"), "{err}");
}

#[test]
fn the_default_directory_follows_the_official_layout_and_hides_the_key() {
    let key = "0f0e0d0c-0b0a-4909-8807-060504030201";
    let dir = directory_in(Path::new("/tmp"), key, "alice", "/usr/bin/app", "/srv");
    // sha256("0f0e…;alice;/usr/bin/app;/srv")
    let digest = Sha256::digest(format!("{key};alice;/usr/bin/app;/srv").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        dir,
        Path::new("/tmp")
            .join(format!("Microsoft-AzureMonitor-{hex}"))
            .join(format!("opentelemetry-rust-{key}"))
    );
    assert_eq!(hex.len(), 64);
    // Another user, program or directory: another storage.
    assert_ne!(
        dir,
        directory_in(Path::new("/tmp"), key, "bob", "/usr/bin/app", "/srv")
    );
    assert_ne!(
        dir,
        directory_in(Path::new("/tmp"), key, "alice", "/usr/bin/app", "/")
    );
    // Nothing but GUID characters of the key reaches the path.
    let odd = directory_in(Path::new("/tmp"), "../../etc/x;y", "", "", "");
    assert_eq!(
        odd.file_name().and_then(|n| n.to_str()),
        Some("opentelemetry-rust-etcxy")
    );
    assert_eq!(odd.parent().and_then(Path::parent), Some(Path::new("/tmp")));
    assert!(default_directory(key).starts_with(std::env::temp_dir()));

    let cfg = StorageConfig {
        secret: key.to_owned(),
        ..config(&dir)
    };
    assert!(!format!("{cfg:?}").contains(key));
    let test_dir = TestDir::new("redact");
    let under = test_dir.0.join(format!("opentelemetry-rust-{key}"));
    let storage = Storage::open(StorageConfig {
        secret: key.to_owned(),
        ..config(&under)
    })
    .unwrap();
    let text = format!("{storage:?} {}", storage.shown());
    assert!(!text.contains(key), "{text}");
    assert!(
        text.contains("opentelemetry-rust-<instrumentation key>"),
        "{text}"
    );
}

#[test]
fn a_held_file_is_on_disk_taken_and_given_back_by_its_holder() {
    let dir = TestDir::new("hold");
    let storage = open(&dir.0);
    let batch = items(0, 3);
    let lease = storage
        .hold(&batch, all(&batch), Duration::from_secs(60))
        .unwrap()
        .unwrap();
    // On disk at once, counted as this storage's, and not handed to anyone else.
    assert_eq!(files(&dir.0).len(), 1);
    assert_eq!(storage.waiting_items(), 3);
    assert!(storage
        .lease_oldest(Duration::from_secs(60))
        .unwrap()
        .is_none());
    // The delivery got two of three through: the third is left, and can be taken.
    storage.replace(lease, &batch, &[2]).unwrap();
    assert_eq!(storage.waiting_items(), 1);
    assert_eq!(drain(&storage), [vec![2]]);
    assert_eq!(storage.waiting_items(), 0);
    assert!(files(&dir.0).is_empty());
}

#[test]
fn own_files_come_first_when_asked_and_only_they_are_counted_as_waiting() {
    let dir = TestDir::new("own");
    // An earlier process left an older file.
    let earlier = open(&dir.0);
    earlier
        .write(now_micros() - A_MINUTE, &items(0, 2), [0, 1], None)
        .unwrap();
    drop(earlier);
    let storage = open(&dir.0);
    storage.store(&items(10, 1), [0]).unwrap();
    assert_eq!(storage.waiting_items(), 1);
    let first = storage
        .lease_next(Duration::from_secs(60), Files::OwnFirst)
        .unwrap()
        .unwrap();
    assert_eq!(numbers(&storage.read(&first).unwrap().items), [10]);
    storage.remove(first);
    // Then the earlier process's, which is not this storage's to count.
    assert_eq!(storage.waiting_items(), 0);
    let next = storage
        .lease_next(Duration::from_secs(60), Files::OwnFirst)
        .unwrap()
        .unwrap();
    assert_eq!(numbers(&storage.read(&next).unwrap().items), [0, 1]);
    storage.remove(next);
    // Without `own_first`, oldest first as before.
    storage.store(&items(20, 1), [0]).unwrap();
    let other = open(&dir.0);
    other
        .write(now_micros() - A_MINUTE, &items(30, 1), [0], None)
        .unwrap();
    assert_eq!(drain(&storage), [vec![30], vec![20]]);
}
