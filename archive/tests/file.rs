//! The directory backend passes the conformance suite and leaves no
//! temporary file behind.

use std::sync::Arc;

#[tokio::test]
async fn the_directory_backend_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("file://{}", dir.path().join("archive").display());
    let archive = archive::open(&url).await.expect("open");
    archive::conformance::run(archive.clone()).await;
    let direct = archive::FileArchive::open(dir.path().join("archive")).expect("open");
    archive::conformance::run(Arc::new(direct)).await;
    archive::conformance::created_once_under_a_race(archive.clone()).await;
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

/// Temporary files of unfinished puts below `dir`.
fn leftovers(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(leftovers(&path));
        } else if entry.file_name().to_string_lossy().starts_with("~tmp-") {
            found.push(path.display().to_string());
        }
    }
    found
}

/// A crash between writing a temporary file and renaming it leaves the
/// file behind; the next open removes such files once their writer is gone
/// and they are a minute old, and leaves a live writer's alone.
#[tokio::test]
async fn leftovers_of_a_crashed_writer_are_swept_on_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("archive");
    let nested = root.join("chat.events/3");
    std::fs::create_dir_all(&nested).expect("mkdir");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
    let leftover = |dir: &std::path::Path, name: &str, when: std::time::SystemTime| {
        let path = dir.join(name);
        let file = std::fs::File::create(&path).expect("create");
        file.set_modified(when).expect("set mtime");
        path
    };
    // No process has a pid this high (pid_max is at most 2^22).
    let dead = leftover(&nested, "~tmp-999999999-00000000000000000100.avro", old);
    let dead_at_root = leftover(&root, "~tmp-999999998-x", old);
    // Just written by a writer that may still be running.
    let fresh = leftover(&nested, "~tmp-999999997-y", std::time::SystemTime::now());
    // Ours: this process is alive.
    let live = leftover(&nested, &format!("~tmp-{}-z", std::process::id()), old);
    let object = nested.join("00000000000000000000.avro");
    std::fs::write(&object, b"kept").expect("write");

    let archive = archive::FileArchive::open(&root).expect("open");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while dead.exists() || dead_at_root.exists() {
        assert!(std::time::Instant::now() < deadline, "leftovers not swept");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(fresh.exists() && live.exists() && object.exists());
    use archive::Archive;
    let listed = archive.list("chat.events/").await.expect("list");
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn a_delete_takes_the_directories_it_empties() {
    let dir = tempfile::tempdir().unwrap();
    let archive = archive::open(&format!("file://{}", dir.path().display()))
        .await
        .unwrap();
    archive.put("uploads/a/data", "x".into()).await.unwrap();
    archive.put("uploads/a/refs/r", "".into()).await.unwrap();
    archive.put("uploads/b/data", "y".into()).await.unwrap();
    archive.delete("uploads/a/refs/r").await.unwrap();
    assert!(!dir.path().join("uploads/a/refs").exists());
    assert!(dir.path().join("uploads/a/data").exists());
    archive.delete("uploads/a/data").await.unwrap();
    assert!(!dir.path().join("uploads/a").exists());
    assert!(
        dir.path().join("uploads/b/data").exists(),
        "a sibling stays"
    );
    archive.delete("uploads/b/data").await.unwrap();
    assert!(!dir.path().join("uploads").exists());
    assert!(dir.path().exists(), "the root stays");
    // And a put into a removed directory makes it again.
    archive.put("uploads/a/data", "z".into()).await.unwrap();
    assert_eq!(archive.get("uploads/a/data").await.unwrap().unwrap(), "z");
}
